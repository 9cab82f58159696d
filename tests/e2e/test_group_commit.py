"""Group commit seen from the chargers (issue 14 step 2, issue 21): messages of many
chargers share database transactions, and each is answered only after its transaction
committed. Raw-frame chargers against the real server, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import json
from pathlib import Path

import trio
from sqlalchemy import text
from sqlalchemy.orm import Session

from tests.e2e.conftest import RunningServer, server_settings, start_server
from tests.support.charger import RawCharger
from tests.support.outage import Outage
from voltaro.store import chargers

CHARGERS = 8


def meter_values(n: int) -> str:
    return json.dumps(
        {
            "connectorId": 1,
            "meterValue": [
                {
                    "timestamp": f"2026-01-01T00:{n // 60:02d}:{n % 60:02d}Z",
                    "sampledValue": [{"value": str(100 + n), "unit": "Wh"}],
                }
            ],
        }
    )


def samples(server: RunningServer, charger_id: str) -> int:
    def count(s: Session) -> int:
        query = text("SELECT count(*) FROM meter_values WHERE charger_id = :c")
        return int(s.execute(query, {"c": charger_id}).scalar_one())

    return int(server.run(count))


async def test_every_answer_comes_after_its_commit(database_url: str, tmp_path: Path) -> None:
    # A long retry budget: while the database is away the messages wait, unanswered.
    settings = server_settings(database_url, tmp_path, db_retry_seconds=60.0)
    async with trio.open_nursery() as nursery:
        server, stop = await start_server(nursery, settings)
        try:
            ids = [f"GC-{i}" for i in range(CHARGERS)]
            for cid in ids:
                server.run(chargers.add_charger, cid)
            fleet = [await RawCharger.connect(f"{server.url}/{cid}") for cid in ids]
            for cp in fleet:
                assert (await cp.boot())["status"] == "Accepted"

            # 1. The database cannot commit: nobody is answered, nothing is stored.
            outage = Outage(settings.database_url)
            outage.start()
            try:
                for i, cp in enumerate(fleet):
                    await cp.send_raw(f'[2,"held-{i}","MeterValues",{meter_values(0)}]')
                async with trio.open_nursery() as waiting:
                    for cp in fleet:
                        waiting.start_soon(cp.expect_silence, 1.5)
            finally:
                outage.end()

            # 2. Once it can: each answer finds its message already stored.
            async def answered_after_commit(cid: str, cp: RawCharger) -> None:
                frame = await cp.recv(timeout=30)
                assert frame[0] == 3, frame
                assert samples(server, cid) == 1
                for n in range(1, 6):
                    await cp.send_raw(f'[2,"m-{n}","MeterValues",{meter_values(n)}]')
                    frame = await cp.recv(timeout=30)
                    assert frame[:2] == [3, f"m-{n}"], frame
                    # Read at the moment the answer arrived: already committed.
                    assert samples(server, cid) == n + 1

            async with trio.open_nursery() as chatting:
                for cid, cp in zip(ids, fleet, strict=True):
                    chatting.start_soon(answered_after_commit, cid, cp)
            for cp in fleet:
                await cp.close()
        finally:
            stop.set()
            server.db.dispose()
