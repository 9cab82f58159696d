"""`voltaro ctl transactions export` pages by (start time, id): a page boundary between
sessions whose start times have microseconds must neither repeat nor skip a session
(issue 19: the export is what billing reads). Chargers send fractions finer than the
millisecond the server prints, so the page cursor must keep the stored precision.
"""

from __future__ import annotations

import csv
import io

import trio

from tests.e2e.conftest import RunningServer
from tests.e2e.test_ctl import ctl
from tests.support.charger import RawCharger
from voltaro.store import chargers, tags


async def test_ctl_export_pages_do_not_repeat_sessions(server: RunningServer) -> None:
    server.run(chargers.add_charger, "CP-1")
    server.run(tags.add_tag, "T1")
    cp = await RawCharger.connect(f"{server.url}/CP-1")
    await cp.boot()
    started = []
    for i in range(3):
        start = await cp.call(
            "StartTransaction",
            {
                "connectorId": 1,
                "idTag": "T1",
                "meterStart": 1000 * i,
                "timestamp": f"2026-11-10T10:00:0{i}.123456Z",
            },
        )
        started.append(str(start["transactionId"]))
        await cp.call(
            "StopTransaction",
            {
                "transactionId": start["transactionId"],
                "meterStop": 1000 * i + 500,
                "timestamp": f"2026-11-10T11:00:0{i}Z",
            },
        )
    await cp.close()
    for page_size in ("1", "2", "500"):
        with trio.fail_after(20):  # a cursor that does not advance pages for ever
            done = await ctl(server, "transactions", "export", "--page-size", page_size)
        assert done.returncode == 0, done.stderr
        rows = list(csv.reader(io.StringIO(done.stdout.decode(), newline="")))[1:]
        assert [row[0] for row in rows] == started, page_size
