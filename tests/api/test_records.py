"""Records an operator reconciles (issue 19): the command audit by charger, user and action;
stops that closed nothing by kind; the CSV export of sessions, compared row by row with
the database, from `voltaro ctl` and from `GET /transactions.csv`.

A real server on loopback (SQLite and PostgreSQL), raw-frame chargers, ctl as a
subprocess, httpx for the API.
"""

from __future__ import annotations

import csv
import getpass
import io
import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import trio
from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from tests.api.conftest import ADMIN, OPERATE, READ, client
from tests.e2e.conftest import RunningServer
from tests.e2e.test_ctl import ctl
from tests.support.charger import RawCharger
from voltaro.store import chargers, tags
from voltaro.store.schema import TransactionRow

# The export's columns, as documented in docs/reconciliation.md (the test's own copy:
# a change of order or name must be a deliberate change of the interface).
HEADER = [
    "transaction_id",
    "charger_id",
    "connector_id",
    "id_tag",
    "id_tag_status",
    "start_time",
    "stop_time",
    "meter_start_wh",
    "meter_stop_wh",
    "energy_wh",
    "energy_flag",
    "state",
    "stop_reason",
    "stop_id_tag",
    "end_reason",
    "ended_at",
    "closed_by",
]


async def _answered(
    cp: RawCharger, answer: dict[str, Any], send: Callable[[], Awaitable[Any]]
) -> Any:
    """Send a command (API or ctl) while the charger answers it."""
    result: list[Any] = []

    async def run() -> None:
        result.append(await send())

    async with trio.open_nursery() as nursery:
        nursery.start_soon(run)
        await cp.answer(await cp.next_call(timeout=15), answer)
    return result[0]


async def test_audit_filtered_by_charger_user_and_action(api: tuple[RunningServer, str]) -> None:
    server, base = api
    for charger_id in ("CP-1", "CP-2"):
        server.run(chargers.add_charger, charger_id)
    one = await RawCharger.connect(f"{server.url}/CP-1")
    two = await RawCharger.connect(f"{server.url}/CP-2")
    await one.boot()
    await two.boot()
    unix_user = getpass.getuser()
    async with client(base, OPERATE) as ops, client(base, ADMIN) as root:
        sent = [
            await _answered(
                one,
                {"status": "Accepted"},
                lambda: ops.post("/charge_points/CP-1/commands/reset", json={"type": "Soft"}),
            ),
            await _answered(
                two,
                {"status": "Unlocked"},
                lambda: ops.post("/charge_points/CP-2/commands/unlock", json={"connector_id": 1}),
            ),
            await _answered(
                two,
                {"status": "Accepted"},
                lambda: root.post("/charge_points/CP-2/commands/reset", json={"type": "Hard"}),
            ),
        ]
        assert [r.status_code for r in sent] == [200, 200, 200], [r.text for r in sent]
    by_ctl = await _answered(
        one, {"status": "Accepted"}, lambda: ctl(server, "clear-cache", "CP-1")
    )
    assert by_ctl.returncode == 0, by_ctl.stderr

    async def listed(*args: str) -> list[tuple[str, str, str, str | None]]:
        done = await ctl(server, "--json", "commands", "list", *args)
        assert done.returncode == 0, done.stderr
        return [
            (c["actor"], c["charger_id"], c["action"], c["status"]) for c in json.loads(done.stdout)
        ]

    assert await listed("--by", "api:ops") == [
        ("api:ops", "CP-2", "UnlockConnector", "Unlocked"),
        ("api:ops", "CP-1", "Reset", "Accepted"),
    ]
    assert await listed("--by", "api:ops", "--charger", "CP-2") == [
        ("api:ops", "CP-2", "UnlockConnector", "Unlocked")
    ]
    assert await listed("--action", "reset") == [
        ("api:root", "CP-2", "Reset", "Accepted"),
        ("api:ops", "CP-1", "Reset", "Accepted"),
    ]
    assert await listed("--by", unix_user) == [(unix_user, "CP-1", "ClearCache", "Accepted")]
    assert await listed("--by", "nobody-at-all") == []
    human = await ctl(server, "commands", "list", "--by", "api:root")
    assert b"api:root" in human.stdout
    assert b"api:ops" not in human.stdout
    unknown = await ctl(server, "commands", "list", "--charger", "NOPE")
    assert unknown.returncode == 5, unknown.stderr  # not_found: a typo, not "nothing"

    async with client(base, READ) as reader:
        page = (await reader.get("/commands", params={"actor": "api:root"})).json()
        assert page["total"] == 1
        assert [(c["charger_id"], c["action"]) for c in page["items"]] == [("CP-2", "Reset")]
        page = (
            await reader.get("/commands", params={"actor": "api:ops", "charge_point_id": "CP-1"})
        ).json()
        assert [(c["actor"], c["action"]) for c in page["items"]] == [("api:ops", "Reset")]
        page = (await reader.get("/commands", params={"action": "UnlockConnector"})).json()
        assert page["total"] == 1
        assert page["items"][0]["actor"] == "api:ops"
    await one.close()
    await two.close()


async def test_stops_listed_by_kind(api: tuple[RunningServer, str]) -> None:
    server, base = api
    server.run(chargers.add_charger, "CP-1")
    server.run(chargers.add_charger, "CP-2")
    server.run(tags.add_tag, "T1")
    one = await RawCharger.connect(f"{server.url}/CP-1")
    two = await RawCharger.connect(f"{server.url}/CP-2")
    await one.boot()
    await two.boot()
    started = await one.call(
        "StartTransaction",
        {"connectorId": 1, "idTag": "T1", "meterStart": 0, "timestamp": "2026-01-01T10:00:00Z"},
    )
    stop = {"meterStop": 500, "timestamp": "2026-01-01T11:00:00Z"}
    # CP-2 stops CP-1's transaction (foreign) and a transaction nobody knows (orphan).
    await two.call("StopTransaction", {**stop, "transactionId": started["transactionId"]})
    await two.call("StopTransaction", {**stop, "transactionId": -1})
    for state, kind in (("orphan", "unknown"), ("foreign", "foreign")):
        done = await ctl(server, "--json", "transactions", "list", "--state", state)
        assert done.returncode == 0, done.stderr
        (row,) = json.loads(done.stdout)
        assert (row["kind"], row["charger_id"]) == (kind, "CP-2")
    foreign = json.loads(
        (await ctl(server, "--json", "transactions", "list", "--state", "foreign")).stdout
    )
    assert foreign[0]["transaction_id"] == started["transactionId"]
    conflict = await ctl(server, "--json", "transactions", "list", "--state", "conflict")
    assert json.loads(conflict.stdout) == []
    none_here = await ctl(
        server, "--json", "transactions", "list", "--state", "orphan", "--charger", "CP-1"
    )
    assert json.loads(none_here.stdout) == []
    human = await ctl(server, "transactions", "list", "--state", "orphan")
    assert human.stdout.split()[0] == b"KIND"
    assert b"unknown" in human.stdout
    async with client(base, READ) as reader:
        stops = (await reader.get("/orphan_stops", params={"kind": "foreign"})).json()
        assert [(s["kind"], s["transaction_id"]) for s in stops] == [
            ("foreign", started["transactionId"])
        ]
        assert len((await reader.get("/orphan_stops")).json()) == 2
        assert (await reader.get("/orphan_stops", params={"kind": "bogus"})).status_code == 422
        assert (
            await reader.get("/orphan_stops", params={"charge_point_id": "NOPE"})
        ).status_code == 404
        active = (await reader.get("/sessions", params={"state": "active"})).json()
        assert [s["transaction_id"] for s in active["items"]] == [started["transactionId"]]
        # Quarantined entries are raw frames: a read token sees none unless an admin
        # allowed viewers raw frames (viewer_frames, issue 15).
        assert (await reader.get("/quarantine")).status_code == 403
    async with client(base, OPERATE) as operator:
        assert (await operator.get("/quarantine")).json() == []
    await one.close()
    await two.close()


# --- the CSV export ----------------------------------------------------------------------

T0 = datetime(2026, 3, 1, tzinfo=UTC)
BULK = 1203  # more than two pages of the API (500) and many of ctl's --page-size


def _bulk_sessions(s: Session) -> None:
    """Sessions written straight into the table (not through the server's code), every
    state and missing value represented, several starting at the same second."""
    rows = []
    states = ("completed", "interrupted", "refused", "closed", "active")
    for i in range(BULK):
        state = states[i % len(states)]
        start = T0 + timedelta(minutes=(i // 3) * 7)  # three sessions per start time
        stopped = state in ("completed", "refused") and i % 10 != 5
        rows.append(
            {
                "transaction_id": 10_000 + (i * 7919) % 100_000,  # not in start order
                # At most one active session per connector (a unique index).
                "charger_id": f"CP-ACTIVE-{i}" if state == "active" else f"CP-{i % 4}",
                "connector_id": 1 + i % 2,
                "id_tag": "=1+1" if i == 500 else f"TAG{i % 13}",
                "tag_key": f"tag{i % 13}",
                "id_tag_status": "Accepted",
                "start_time": start,
                "meter_start": 1000 * i,
                "state": state,
                "stop_time": start + timedelta(minutes=30, milliseconds=250 * (i % 4))
                if stopped
                else None,
                "meter_stop": 1000 * i + 750 + i if stopped else None,
                "stop_reason": "Local" if stopped else None,
                "energy_wh": 750 + i if stopped or state == "interrupted" else None,
                "energy_flag": "estimated" if state == "interrupted" else None,
                "end_reason": "superseded, by a new start" if state == "interrupted" else None,
                "ended_at": start + timedelta(hours=1)
                if state in ("interrupted", "closed")
                else None,
                "closed_by": "alice" if state == "closed" else None,
                "created_at": start,
            }
        )
    s.execute(insert(TransactionRow), rows)


def _iso(moment: datetime | None) -> str:
    if moment is None:
        return ""
    moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    text = moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return text.replace(".000Z", "Z")


def _expected(
    s: Session, start: datetime, end: datetime, charger_id: str | None = None
) -> list[list[str]]:
    """The export as the database holds it, read here independently of the export code."""
    query = (
        select(TransactionRow)
        .where(TransactionRow.start_time >= start, TransactionRow.start_time < end)
        .order_by(TransactionRow.start_time, TransactionRow.transaction_id)
    )
    if charger_id is not None:
        query = query.where(TransactionRow.charger_id == charger_id)

    def text(value: object) -> str:
        return "" if value is None else str(value)

    def guarded(value: str | None) -> str:
        return "'" + value if value and value[0] in "=+-@\t\r" else text(value)

    return [
        [
            str(r.transaction_id),
            guarded(r.charger_id),
            str(r.connector_id),
            guarded(r.id_tag),
            r.id_tag_status,
            _iso(r.start_time),
            _iso(r.stop_time),
            str(r.meter_start),
            text(r.meter_stop),
            text(r.energy_wh),
            text(r.energy_flag),
            r.state,
            guarded(r.stop_reason),
            guarded(r.stop_id_tag),
            guarded(r.end_reason),
            _iso(r.ended_at),
            guarded(r.closed_by),
        ]
        for r in s.scalars(query)
    ]


def _parse(text: str) -> list[list[str]]:
    rows = list(csv.reader(io.StringIO(text, newline="")))
    assert rows[0] == HEADER
    return rows[1:]


async def test_export_matches_the_database(api: tuple[RunningServer, str]) -> None:
    server, base = api
    server.run(chargers.add_charger, "CP-LIVE")
    server.run(tags.add_tag, "T1")
    server.run(_bulk_sessions)
    # One session through the server itself, stopped with a reason.
    cp = await RawCharger.connect(f"{server.url}/CP-LIVE")
    await cp.boot()
    live = await cp.call(
        "StartTransaction",
        {"connectorId": 1, "idTag": "T1", "meterStart": 100, "timestamp": "2026-03-02T08:00:00Z"},
    )
    await cp.call(
        "StopTransaction",
        {
            "transactionId": live["transactionId"],
            "meterStop": 2600,
            "timestamp": "2026-03-02T09:15:30.5Z",
            "reason": "EVDisconnected",
        },
    )
    await cp.close()
    start, end = datetime(2026, 3, 1, 12, tzinfo=UTC), datetime(2026, 3, 2, 20, tzinfo=UTC)
    expected = server.run(_expected, start, end)
    assert 500 < len(expected) < BULK  # the window cuts the bulk at both ends
    assert {row[11] for row in expected} == {
        "completed",
        "interrupted",
        "refused",
        "closed",
        "active",
    }
    mine = [row for row in expected if row[0] == str(live["transactionId"])]
    assert mine == [
        [
            str(live["transactionId"]),
            "CP-LIVE",
            "1",
            "T1",
            "Accepted",
            "2026-03-02T08:00:00Z",
            "2026-03-02T09:15:30.500Z",
            "100",
            "2600",
            "2500",
            "",
            "completed",
            "EVDisconnected",
            "",
            "",
            "",
            "",
        ]
    ]

    window = ("--from", "2026-03-01T12:00:00Z", "--to", "2026-03-02T20:00:00Z")
    done = await ctl(server, "transactions", "export", *window, "--page-size", "7")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(b"transaction_id,charger_id,")
    from_ctl = _parse(done.stdout.decode())
    assert from_ctl == expected
    default_pages = await ctl(server, "transactions", "export", *window)
    assert default_pages.stdout == done.stdout
    one_charger = await ctl(server, "transactions", "export", *window, "--charger", "CP-2")
    assert _parse(one_charger.stdout.decode()) == server.run(_expected, start, end, "CP-2")

    async with client(base, READ) as reader:
        async with reader.stream(
            "GET",
            "/transactions.csv",
            params={"from": "2026-03-01T12:00:00Z", "to": "2026-03-02T20:00:00Z"},
        ) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/csv")
            assert "attachment" in response.headers["content-disposition"]
            assert "content-length" not in response.headers  # streamed, not built first
            body = b"".join([chunk async for chunk in response.aiter_bytes()])
        assert body == done.stdout  # the same file, byte for byte
        for bad in ({"from": "soon"}, {"to": "2026-13-01"}):
            assert (await reader.get("/transactions.csv", params=bad)).status_code == 422
        unknown = await reader.get("/transactions.csv", params={"charge_point_id": "NOPE"})
        assert unknown.status_code == 404
        empty = await reader.get("/transactions.csv", params={"from": "2030-01-01T00:00:00Z"})
        assert _parse(empty.text) == []
    async with client(base, None) as anonymous:
        assert (await anonymous.get("/transactions.csv")).status_code == 401

    refused = await ctl(
        server,
        "transactions",
        "export",
        "--from",
        "2026-03-04T00:00:00Z",
        "--to",
        "2026-03-01T00:00:00Z",
    )
    assert refused.returncode == 2
    assert b"not before" in refused.stderr
    formula = [row for row in from_ctl if row[3].startswith("'")]
    assert [row[3] for row in formula] == ["'=1+1"]
