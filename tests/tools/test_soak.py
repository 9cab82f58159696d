"""scripts/soak.py against the real server: a short run (100 chargers, 20 s) on SQLite
and PostgreSQL must find nothing acknowledged lost or doubled (issue 21)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import trio

from tests.e2e.conftest import server_settings, start_server

SOAK = Path(__file__).resolve().parents[2] / "scripts" / "soak.py"


async def test_short_soak_loses_nothing(database_url: str, tmp_path: Path) -> None:
    settings = server_settings(
        database_url, tmp_path, db_retry_seconds=5.0, call_timeout=10.0, max_pending_per_ip=1000
    )
    async with trio.open_nursery() as nursery:
        server, stop = await start_server(nursery, settings)
        try:
            with trio.fail_after(240):
                result = await trio.run_process(
                    [
                        sys.executable,
                        str(SOAK),
                        server.url,
                        "--chargers",
                        "100",
                        "--duration",
                        "20",
                        "--ramp",
                        "3",
                        "--think",
                        "0.2",
                        "1.5",
                        "--grace",
                        "60",
                        "--socket",
                        str(server.addresses.control_socket),
                        "--json",
                    ],
                    capture_stdout=True,
                    capture_stderr=True,
                    check=False,
                )
        finally:
            stop.set()
            server.db.dispose()
    out = result.stdout.decode()
    assert result.returncode == 0, out + result.stderr.decode()
    figures = json.loads(out[out.index("{") : out.rindex("}") + 1])
    assert figures["lost"] == 0
    assert figures["doubled"] == 0
    assert figures["acknowledged"]["StatusNotification"] > 100
    assert figures["sessions"] > 0
    assert figures["connected_after_hang_up"] == 0
