"""Issue 11: no frame from a charger takes the server down or corrupts what others store.

Each test drives the real server (SQLite and PostgreSQL) with raw frames from an
independent WebSocket client and then checks what the charger got, what was stored, and
that a healthy charger is still served.
"""

from __future__ import annotations

import io
import json
import logging

import pytest
import trio

from tests.e2e.conftest import RunningServer, eventually
from tests.e2e.control_client import ControlClient
from tests.support.charger import RawCharger
from voltaro.domain.model import RegistrationStatus
from voltaro.logs import configure_logging
from voltaro.store import chargers, frames, transactions
from voltaro.store.schema import FrameRow


async def booted(server: RunningServer, charger_id: str) -> RawCharger:
    server.run(chargers.add_charger, charger_id)
    cp = await RawCharger.connect(f"{server.url}/{charger_id}")
    assert (await cp.boot())["status"] == "Accepted"
    return cp


async def still_serves(server: RunningServer, charger_id: str = "HEALTHY") -> None:
    cp = await booted(server, charger_id)
    assert "currentTime" in await cp.call("Heartbeat", {})
    await cp.close()


def all_frames(server: RunningServer) -> list[FrameRow]:
    from sqlalchemy import select

    return list(server.run(lambda s: list(s.scalars(select(FrameRow).order_by(FrameRow.id)))))


def no_tracebacks(caplog: pytest.LogCaptureFixture) -> None:
    crashes = [r for r in caplog.records if r.exc_info and r.levelno >= logging.ERROR]
    assert not crashes, [r.getMessage() for r in crashes]


# --- item 1: lone surrogates, NUL --------------------------------------------------------


async def test_lone_surrogates_get_answers_and_the_server_lives(
    server: RunningServer, caplog: pytest.LogCaptureFixture
) -> None:
    cp = await booted(server, "CP-1")
    # In the unique id: the CALL is answered with that same id (JSON-escaped).
    await cp.send_raw('[2,"\\ud800","Heartbeat",{}]')
    answer = await cp.recv()
    assert answer[0] == 3
    assert answer[1] == "\ud800"
    # In the action: not a known action.
    await cp.send_raw('[2,"a2","Heart\\udfffbeat",{}]')
    assert (await cp.recv())[:3] == [4, "a2", "NotImplemented"]
    # An answer to nothing: no reply.
    await cp.send_raw('[3,"\\ud800",{}]')
    # NUL and a surrogate in payload strings: repaired, the message is accepted.
    data = await cp.call("DataTransfer", {"vendorId": "v\\u0000\ud800", "data": "x\u0000"})
    assert data["status"] == "UnknownVendorId"
    await cp.expect_silence(0.3)

    # The frame log wrote all of it (each text field repaired) and its task is alive.
    def cp1_frames() -> list[FrameRow] | None:
        rows = [f for f in all_frames(server) if f.charger_id == "CP-1"]
        return rows if len(rows) >= 9 else None  # 4 CALLs, 4 answers, 1 stray answer

    stored = await eventually(cp1_frames)
    assert any(f.unique_id == "\ufffd" for f in stored)
    assert any(f.action and f.action.startswith("Heart\ufffd") for f in stored)
    await still_serves(server)
    await cp.close()
    no_tracebacks(caplog)


async def test_surrogate_in_a_transaction_message_is_stored_repaired(
    server: RunningServer,
) -> None:
    cp = await booted(server, "CP-1")
    started = await cp.send_raw(
        '[2,"s1","StartTransaction",{"connectorId":1,"idTag":"T\\ud83d","meterStart":0,'
        '"timestamp":"2025-05-01T10:00:00Z"}]'
    )
    assert started is None
    answer = await cp.recv()
    assert answer[0] == 3, answer
    tx = answer[2]["transactionId"]
    stored = server.run(transactions.get_transaction, tx)
    assert stored.id_tag == "T\ufffd"
    await cp.close()


# --- item 2: overflowing values ----------------------------------------------------------


@pytest.mark.parametrize(
    "payload",
    [
        '{"connectorId":1,"idTag":"T","meterStart":1e400,"timestamp":"2025-05-01T10:00:00Z"}',
        '{"connectorId":1,"idTag":"T","meterStart":1e300,"timestamp":"2025-05-01T10:00:00Z"}',
        '{"connectorId":1,"idTag":"T","meterStart":9223372036854775808,'
        '"timestamp":"2025-05-01T10:00:00Z"}',
        '{"connectorId":1180591620717411303424,"idTag":"T","meterStart":0,'
        '"timestamp":"2025-05-01T10:00:00Z"}',
    ],
)
async def test_numbers_no_store_can_hold_get_type_constraint_violation(
    server: RunningServer, payload: str, caplog: pytest.LogCaptureFixture
) -> None:
    cp = await booted(server, "CP-1")
    await cp.send_raw(f'[2,"n1","StartTransaction",{payload}]')
    answer = await cp.recv()
    assert answer[:3] == [4, "n1", "TypeConstraintViolation"]
    await cp.send_raw(
        '[2,"n2","StopTransaction",{"transactionId":1180591620717411303424,"meterStop":5,'
        '"timestamp":"2025-05-01T11:00:00Z"}]'
    )
    assert (await cp.recv())[:3] == [4, "n2", "TypeConstraintViolation"]
    assert "currentTime" in await cp.call("Heartbeat", {})
    await cp.close()
    no_tracebacks(caplog)


@pytest.mark.parametrize("stamp", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-05:00"])
async def test_extreme_timestamps_have_a_defined_outcome(
    server: RunningServer, stamp: str, caplog: pytest.LogCaptureFixture
) -> None:
    cp = await booted(server, "CP-1")
    started = await cp.call(
        "StartTransaction", {"connectorId": 1, "idTag": "T", "meterStart": 0, "timestamp": stamp}
    )
    tx = started["transactionId"]
    status = await cp.call(
        "StatusNotification",
        {"connectorId": 1, "errorCode": "NoError", "status": "Charging", "timestamp": stamp},
    )
    assert status == {}
    stopped = await cp.call(
        "StopTransaction", {"transactionId": tx, "meterStop": 10, "timestamp": stamp}
    )
    assert isinstance(stopped, dict), stopped
    stored = server.run(transactions.get_transaction, tx)
    assert stored.meter_stop == 10
    await cp.close()
    no_tracebacks(caplog)


# --- item 3: one bad frame never costs the others theirs ----------------------------------


async def test_an_over_long_action_with_nul_does_not_drop_other_chargers_frames(
    server: RunningServer,
) -> None:
    bad = await booted(server, "BAD")
    good = [await booted(server, f"GOOD-{i}") for i in range(5)]
    await bad.send_raw(json.dumps([2, "b1", "X\u0000" * 50, {}]))
    assert (await bad.recv())[:3] == [4, "b1", "NotImplemented"]
    for cp in good:
        await cp.call("Heartbeat", {})
    await bad.send_raw(json.dumps([2, "b2", "Y\u0000" * 50, {}]))
    await bad.recv()

    def stored() -> list[FrameRow] | None:
        rows = all_frames(server)
        heartbeats = [
            r for r in rows if r.charger_id.startswith("GOOD") and r.action == "Heartbeat"
        ]
        return rows if len(heartbeats) >= 10 else None  # 5 CALLs and 5 answers

    rows = await eventually(stored)
    bad_rows = [r for r in rows if r.charger_id == "BAD" and r.unique_id in ("b1", "b2")]
    assert bad_rows, "the bad frames are stored escaped"
    assert all(r.action is None or len(r.action) <= 64 for r in bad_rows)
    assert all("\x00" not in (r.action or "") + r.payload for r in bad_rows)
    for cp in (bad, *good):
        await cp.close()


async def test_a_batch_the_database_refuses_falls_back_row_by_row(
    server: RunningServer,
) -> None:
    from datetime import UTC, datetime

    from voltaro.domain.model import FrameRecord
    from voltaro.service.frame_log import FrameSink

    sink = FrameSink(
        db=server.db,
        settings=server.settings,
        publish=lambda *a: None,
    )
    at = datetime(2025, 1, 1, tzinfo=UTC)
    good = [FrameRecord(charger_id=f"G{i}", direction="in", at=at, payload="[]") for i in range(20)]
    # A message type no INTEGER column holds: PostgreSQL refuses the row (SQLite keeps it).
    poison = FrameRecord(charger_id="P", direction="in", at=at, payload="[]", message_type=2**40)
    for frame in (*good[:10], poison, *good[10:]):
        sink.record(frame)
    await sink.flush()
    rows = all_frames(server)
    assert sorted(r.charger_id for r in rows if r.charger_id.startswith("G")) == sorted(
        f.charger_id for f in good
    )
    assert sink.stats.stored + sink.stats.rows_escaped + sink.stats.rows_skipped == 21
    if server.db.backend == "postgresql":
        assert sink.stats.rows_skipped == 1


# --- item 4: log forging -----------------------------------------------------------------


async def test_charger_strings_cannot_forge_log_lines(
    server: RunningServer, caplog: pytest.LogCaptureFixture
) -> None:
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    configure_logging("INFO")
    formatter = root.handlers[0].formatter
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in saved[0]:
        root.addHandler(handler)
    root.setLevel(saved[1])
    assert formatter is not None
    caplog.set_level(logging.INFO)

    cp = await booted(server, "CP-1")
    forged = "acme\n2026-01-01T00:00:00.000Z WARNING voltaro.net.auth: security: forged\x1b[2J"
    await cp.call("DataTransfer", {"vendorId": forged[:255], "messageId": "m\r\nsecurity: x"})
    await cp.send_raw(json.dumps([2, "id\nsecurity: forged", "Nope", {}]))
    await cp.recv()
    await cp.close()
    out = io.StringIO()
    for record in caplog.records:
        out.write(formatter.format(record).split("\nTraceback", 1)[0] + "\n")
    lines = out.getvalue().splitlines()
    assert any("DataTransfer vendor=acme\\n2026" in line for line in lines)
    assert not any(line.startswith(("2026-01-01", "security")) for line in lines)
    assert not any("\x1b" in line or "\r" in line for line in lines)


# --- item 12: reject ends the session -----------------------------------------------------


async def test_chargers_reject_closes_the_live_connection(server: RunningServer) -> None:
    cp = await booted(server, "CP-1")
    assert server.addresses.control_socket is not None
    client = await ControlClient.connect(server.addresses.control_socket)
    answer = await client.request("chargers.reject", {"charger_id": "CP-1"})
    assert answer["ok"], answer
    assert await cp.wait_closed() == 1000
    await client.aclose()
    again = await RawCharger.connect(f"{server.url}/CP-1")
    assert (await again.boot())["status"] == "Rejected"
    record = server.run(chargers.get_charger, "CP-1")
    assert record.registration is RegistrationStatus.REJECTED
    await again.close()


# --- issue 21 item 4: answers carry the action of their CALL -------------------------------


async def test_answers_in_the_frame_log_carry_the_action_they_answer(
    server: RunningServer,
) -> None:
    cp = await booted(server, "CP-1")
    await cp.send_raw(json.dumps([2, "e1", "Heartbeat", {"x": 1}]))  # additional property
    await cp.recv()
    assert server.addresses.control_socket is not None
    client = await ControlClient.connect(server.addresses.control_socket)
    async with trio.open_nursery() as nursery:

        async def send() -> None:
            await client.command("CP-1", "clear-cache")

        nursery.start_soon(send)
        call = await cp.next_call()
        await cp.answer(call, {"status": "Accepted"})
    await client.aclose()

    def answers() -> list[FrameRow] | None:
        rows = [r for r in all_frames(server) if r.charger_id == "CP-1"]
        ours = [r for r in rows if r.unique_id in (call[1], "e1") and r.message_type in (3, 4)]
        return ours if len(ours) == 2 else None

    rows = await eventually(answers)
    assert {(r.message_type, r.action) for r in rows} == {(3, "ClearCache"), (4, "Heartbeat")}
    await cp.close()


async def test_frames_persist_through_the_recent_frames_query(server: RunningServer) -> None:
    cp = await booted(server, "CP-1")
    await cp.call("Heartbeat", {})
    await cp.close()
    recent = await eventually(lambda: server.run(frames.recent_frames, "CP-1", limit=10))
    assert {f.direction for f in recent} == {"in", "out"}


async def test_operators_cannot_add_ids_the_handshake_would_refuse(
    server: RunningServer,
) -> None:
    assert server.addresses.control_socket is not None
    client = await ControlClient.connect(server.addresses.control_socket)
    for bad in ("\u00c5", "A\u030a", "\u0421P-1", "CP-1 ", "CP-1\u00a0", "a\nb"):
        answer = await client.request("chargers.add", {"charger_id": bad})
        assert answer["ok"] is False, bad
        assert answer["error"]["code"] == "bad_arguments"
    good = await client.request("chargers.add", {"charger_id": "RDAM 123"})
    assert good["ok"], good
    await client.aclose()
    cp = await RawCharger.connect(f"{server.url}/RDAM%20123")
    assert (await cp.boot())["status"] == "Accepted"
    await cp.close()


# --- deep nesting reaches the frame log's parsed secret check (found by review1) --------


@pytest.mark.parametrize(
    "field",
    [
        '"data":"line\\nbreak"',  # a JSON escape: the frame is parsed before it is stored
        '"password":"hunter2"',  # a secret: parsed, and hidden
    ],
)
async def test_a_deeply_nested_frame_gets_its_answer_and_is_stored_redacted(
    server: RunningServer, caplog: pytest.LogCaptureFixture, field: str
) -> None:
    cp = await booted(server, "CP-1")
    # 600 levels: json.loads takes it (the protocol layer reads its id and refuses it),
    # but a recursive walk of it exceeds Python's recursion limit.
    deep = "[" * 600 + "]" * 600
    await cp.send_raw('[2,"deep","DataTransfer",{"vendorId":"v",' + field + ',"x":' + deep + "}]")
    answer = await cp.recv()
    assert answer[:3] == [4, "deep", "FormationViolation"], answer
    assert "currentTime" in await cp.call("Heartbeat", {})
    stored = await eventually(lambda: [f for f in all_frames(server) if f.unique_id == "deep"])
    assert "hunter2" not in stored[0].payload
    no_tracebacks(caplog)
    await still_serves(server)
