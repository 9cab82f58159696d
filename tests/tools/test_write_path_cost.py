"""scripts/write_path_cost.py measures the store's own MeterValues unit of work and
checks that every sample it timed was stored (issue 14: a benchmark checks that what it
counted happened). Run as a user runs it, on a real SQLite file and on PostgreSQL."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "write_path_cost.py"


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), "--sizes", "1,3", "--batches", "4", "--repeats", "2", *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def rows(out: str) -> list[list[str]]:
    return [
        [cell.strip() for cell in line.strip("|").split("|")]
        for line in out.splitlines()
        if line.startswith("| ") and line[2].isdigit()
    ]


def test_sqlite_prints_a_row_per_size_and_checks_the_stored_samples() -> None:
    done = run()
    assert done.returncode == 0, done.stdout + done.stderr
    assert "FAILED" not in done.stdout
    table = rows(done.stdout)
    assert [row[0] for row in table] == ["1", "3"]
    assert all("[" in row[1] and "-" in row[1] for row in table), table  # median [min-max]


@pytest.mark.postgres
def test_postgresql(postgres_url: str) -> None:
    # The script makes its own database on that server (it needs CREATE DATABASE).
    server = postgres_url.rsplit("/", 1)[0] + "/postgres"
    done = run("--postgres", server)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith("postgresql:")
    assert [row[0] for row in rows(done.stdout)] == ["1", "3"]
