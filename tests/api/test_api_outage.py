"""The HTTP API while the database is down (PostgreSQL) or write-locked (SQLite), issue
10 §3: a clear 503 with Retry-After and the usual JSON error body, never a bare 500 or a
hang; nothing half-written; the same request succeeds once the database is back."""

from __future__ import annotations

from typing import Any

from tests.api.conftest import OPERATE, client
from tests.e2e.conftest import RunningServer
from tests.support.charger import RawCharger
from tests.support.outage import database_outage
from voltaro.domain.model import TransactionState
from voltaro.store import chargers, commands, tags, transactions


def assert_unavailable(response: Any) -> None:
    assert response.status_code == 503, (response.status_code, response.text)
    assert int(response.headers["retry-after"]) > 0
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()["error"]
    assert error["code"] == "unavailable", error
    assert "database" in error["message"]


async def test_api_during_an_outage_is_503_with_retry_after_and_writes_nothing(
    api: tuple[RunningServer, str],
) -> None:
    server, base = api
    server.run(chargers.add_charger, "CP-1")
    server.run(tags.add_tag, "DRIVER")
    cp = await RawCharger.connect(f"{server.url}/CP-1")
    assert (await cp.boot())["status"] == "Accepted"
    started = await cp.call(
        "StartTransaction",
        {"connectorId": 1, "idTag": "DRIVER", "meterStart": 0, "timestamp": "2026-01-01T10:00:00Z"},
    )
    tx = started["transactionId"]
    close = {"meter_stop": 900, "reason": "stop lost"}
    async with client(base, OPERATE) as ops:
        with database_outage(server.settings.database_url) as outage:
            created = await ops.post("/id_tags", json={"id_tag": "NEW"})
            blocked = await ops.patch("/id_tags/DRIVER", json={"status": "Blocked"})
            closed = await ops.post(f"/sessions/{tx}/close", json=close)
            listed = await ops.get("/charge_points")
        for response in (created, blocked, closed):
            assert_unavailable(response)
        if outage.is_sqlite:
            assert listed.status_code == 200  # reads go on while a writer holds the lock
        else:
            assert_unavailable(listed)
        # Nothing half-written: no tag, the tag unchanged, the session open, no audit row.
        assert server.run(tags.get_tag, "NEW") is None
        assert server.run(tags.get_tag, "DRIVER").status.value == "Accepted"
        assert server.run(transactions.get_transaction, tx).state is TransactionState.ACTIVE
        assert [a for a in server.run(commands.list_commands, "CP-1")] == []
        # The server stayed up; the same requests now succeed, once each.
        assert (await ops.post("/id_tags", json={"id_tag": "NEW"})).status_code == 201
        assert (await ops.post(f"/sessions/{tx}/close", json=close)).status_code == 200
        assert (await ops.get("/charge_points")).status_code == 200
    done = server.run(transactions.get_transaction, tx)
    assert (done.state, done.energy_wh) == (TransactionState.CLOSED, 900)
    audit = server.run(commands.list_commands, "CP-1")
    assert [(a["action"], a["status"]) for a in audit] == [("transactions.close", "closed")]
    await cp.close()
