"""`voltaro serve` start-up failures: one line naming the setting, exit 1 or 2.

Each case runs the real command in a subprocess and makes the failure happen.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest


def voltaro(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("VOLTARO_")}
    return subprocess.run(
        [sys.executable, "-m", "voltaro", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**clean, **(env or {})},
        check=False,
    )


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def serve_args(tmp_path: Path, **flags: str) -> list[str]:
    values = {
        "host": "127.0.0.1",
        "port": "0",
        "http-host": "127.0.0.1",
        "http-port": "0",
        "database-url": f"sqlite:///{tmp_path / 'v.db'}",
        "control-socket": str(tmp_path / "ctl.sock"),
        "log-level": "ERROR",
    }
    values.update({k.replace("_", "-"): v for k, v in flags.items()})
    return ["serve", *(part for k, v in values.items() for part in (f"--{k}", v))]


def assert_one_line(result: subprocess.CompletedProcess[str], code: int, expected: str) -> None:
    assert result.returncode == code, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.splitlines() == [expected]


def test_ocpp_port_in_use(tmp_path: Path, busy_port: int) -> None:
    result = voltaro(*serve_args(tmp_path, port=str(busy_port)))
    assert_one_line(
        result,
        1,
        f"voltaro: cannot listen for chargers on 127.0.0.1:{busy_port} (settings host, port): "
        "address already in use",
    )


def test_http_port_in_use(tmp_path: Path, busy_port: int) -> None:
    result = voltaro(*serve_args(tmp_path, http_port=str(busy_port)))
    assert_one_line(
        result,
        1,
        f"voltaro: cannot serve the HTTP API on 127.0.0.1:{busy_port} (settings http_host, "
        "http_port; http_enabled = false turns it off): address already in use",
    )
    assert not (tmp_path / "ctl.sock").exists()  # the control socket was cleaned up


def test_live_control_socket(tmp_path: Path) -> None:
    path = tmp_path / "ctl.sock"
    with socket.socket(socket.AF_UNIX) as other_server:
        other_server.bind(str(path))
        other_server.listen()
        result = voltaro(*serve_args(tmp_path))
        assert path.exists()  # the other server's socket was left alone
    assert_one_line(
        result,
        1,
        f"voltaro: cannot open the control socket {path} (setting control_socket): "
        f"another server is listening on {path}",
    )


def test_unreachable_postgresql(tmp_path: Path) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"postgresql+psycopg://voltaro:secret@127.0.0.1:{port}/voltaro"
    result = voltaro(*serve_args(tmp_path, database_url=url))
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    (line,) = result.stderr.splitlines()
    assert line.startswith(
        f"voltaro: cannot use the database postgresql+psycopg://voltaro:***@127.0.0.1:{port}/"
        "voltaro (setting database_url): connection failed"
    ), line
    assert "secret" not in result.stderr


def test_traceback_only_with_debug(tmp_path: Path, busy_port: int) -> None:
    result = voltaro(*serve_args(tmp_path, port=str(busy_port), log_level="DEBUG"))
    assert result.returncode == 1
    assert "Traceback" in result.stderr
    assert result.stderr.splitlines()[-1].startswith("voltaro: cannot listen for chargers")


@pytest.mark.parametrize(
    ("args", "env", "toml", "expected"),
    [
        (
            ("--port", "nine"),
            {},
            None,
            "voltaro: setting port: expected a whole number, got 'nine' (from flag --port)",
        ),
        (
            (),
            {"VOLTARO_UNKNOWN_CHARGERS": "maybe"},
            None,
            "voltaro: setting unknown_chargers: 'maybe' is not one of reject, pending, accept "
            "(from environment variable VOLTARO_UNKNOWN_CHARGERS)",
        ),
        (
            (),
            {},
            "ping_interval = 'often'\n",
            "voltaro: setting ping_interval: expected a number of seconds, got 'often' "
            "(from {toml})",
        ),
        (
            (),
            {"VOLTARO_LOG_FORMAT": "xml"},
            None,
            "voltaro: setting log_format: 'xml' is not one of text, kv, json "
            "(from environment variable VOLTARO_LOG_FORMAT)",
        ),
        (
            ("--http-port", "70000"),
            {},
            None,
            "voltaro: setting http_port: 70000 is not a TCP port (0-65535) (from flag --http-port)",
        ),
    ],
)
def test_bad_setting_says_where_it_came_from(
    tmp_path: Path,
    args: tuple[str, ...],
    env: dict[str, str],
    toml: str | None,
    expected: str,
) -> None:
    extra: list[str] = []
    config = tmp_path / "voltaro.toml"
    if toml is not None:
        config.write_text(toml)
        extra = ["--config", str(config)]
    result = voltaro("serve", *extra, *args, env=env)
    assert_one_line(result, 2, expected.replace("{toml}", str(config)))


def test_serve_help_shows_defaults_and_the_settings_table() -> None:
    result = voltaro("serve", "--help")
    assert result.returncode == 0
    text = " ".join(result.stdout.split())
    assert "(default: 9000)" in text
    assert "(default: sqlite:///voltaro.db)" in text
    assert "README.md, Configuration" in text


def test_db_upgrade_says_what_it_did(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    first = voltaro("db", "upgrade", "--database-url", url)
    assert first.returncode == 0, first.stderr
    assert first.stdout.startswith("voltaro: created the schema in an empty database (revision ")
    again = voltaro("db", "upgrade", "--database-url", url)
    assert again.stdout.startswith("voltaro: the database is already at the current schema")


def test_json_log_format_is_one_object_per_line(tmp_path: Path, busy_port: int) -> None:
    result = voltaro(
        *serve_args(tmp_path, http_port=str(busy_port), log_level="INFO"),
        env={"VOLTARO_LOG_FORMAT": "json"},
    )
    *logs, last = result.stderr.splitlines()
    assert last.startswith("voltaro: cannot serve the HTTP API")
    assert logs
    entries = [json.loads(line) for line in logs]
    assert {"time", "level", "logger", "message"} <= set(entries[0])
    assert any("control socket at" in e["message"] for e in entries)


def test_local_ca_files_are_checked_at_start(tmp_path: Path) -> None:
    """A CA that cannot sign stops the server at start with one line naming the setting
    (never a byte of the key), not at the first SignCertificate."""
    made = voltaro("ca", "init", "--dir", str(tmp_path / "ca"))
    assert made.returncode == 0, made.stderr
    other = voltaro("ca", "init", "--dir", str(tmp_path / "other"))
    assert other.returncode == 0, other.stderr
    cert, key = tmp_path / "ca" / "ca.pem", tmp_path / "ca" / "ca.key"
    wrong_key = tmp_path / "other" / "ca.key"
    result = voltaro(*serve_args(tmp_path, ca_certfile=str(cert), ca_keyfile=str(wrong_key)))
    assert_one_line(
        result,
        1,
        f"voltaro: the CA key {wrong_key} does not belong to the CA certificate {cert} "
        "(settings ca_keyfile, ca_certfile)",
    )
    result = voltaro(
        *serve_args(tmp_path, ca_certfile=str(tmp_path / "missing.pem"), ca_keyfile=str(key))
    )
    assert_one_line(
        result,
        1,
        f"voltaro: cannot use the CA certificate {tmp_path / 'missing.pem'} "
        "(setting ca_certfile): No such file or directory",
    )
    only_one = voltaro(*serve_args(tmp_path, ca_certfile=str(cert)))
    assert only_one.returncode == 2
    assert "ca_keyfile: set both CA files or neither" in only_one.stderr
