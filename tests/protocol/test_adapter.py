"""The trio adapter against an independent raw-frame charger over loopback."""

from __future__ import annotations

import json

import pytest
import trio

from tests.protocol.conftest import AdapterServer
from tests.support.charger import RawCharger
from voltaro.domain.commands import (
    ChangeConfiguration,
    CommandError,
    CommandErrorCode,
    GetConfiguration,
    RemoteStart,
    Reset,
    ResetType,
)
from voltaro.protocol import ConnectionLimits


async def test_boot_heartbeat_round_trip(adapter_server: AdapterServer) -> None:
    cp = await RawCharger.connect(f"{adapter_server.url}/CP-1")
    answer = await cp.boot(chargePointSerialNumber="S" * 30)  # Q9: over-long serial kept
    assert answer == {"status": "Accepted", "currentTime": "2025-01-02T03:04:05Z", "interval": 300}
    (boot,) = adapter_server.backend.requests("boot")
    assert boot.identity.serial_number == "S" * 30
    beat = await cp.call("Heartbeat", {})
    assert beat["currentTime"].endswith("Z")
    await cp.close()


async def test_frames_are_recorded_both_ways(adapter_server: AdapterServer) -> None:
    cp = await RawCharger.connect(f"{adapter_server.url}/CP-F")
    await cp.call("Heartbeat", {})
    directions = [(f.direction, f.message_type) for f in adapter_server.backend.frames]
    assert ("in", 2) in directions
    assert ("out", 3) in directions
    await cp.close()


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ("this is { not json", "FormationViolation"),
        ('{"a": 1}', "ProtocolError"),
        ("[]", "ProtocolError"),
        ("[" * 100_000, "FormationViolation"),  # RecursionError must not escape
        ('[2, "nan", "Heartbeat", {"x": NaN}]', "FormationViolation"),
    ],
)
async def test_unparsable_frames_get_callerror_with_id_minus_one(
    adapter_server: AdapterServer, frame: str, code: str
) -> None:
    cp = await RawCharger.connect(f"{adapter_server.url}/CP-BAD")
    await cp.send_raw(frame)
    error = await cp.recv()
    assert error[:3] == [4, "-1", code]
    assert isinstance(error[4], dict)
    assert "currentTime" in await cp.call("Heartbeat", {})  # the connection lives on
    await cp.close()


async def test_unknown_message_type_is_ignored(adapter_server: AdapterServer) -> None:
    cp = await RawCharger.connect(f"{adapter_server.url}/CP-7")
    await cp.send_raw('[7, "m-7", {}]')  # OCPP-J §4.1.3: no reply
    await cp.send_raw('[3, "nobody-asked", {}]')  # stray CALLRESULT: ignored too
    await cp.expect_silence()
    assert "currentTime" in await cp.call("Heartbeat", {})
    await cp.close()


async def test_error_codes_follow_ocpp_j_16(adapter_server: AdapterServer) -> None:
    cp = await RawCharger.connect(f"{adapter_server.url}/CP-E")
    unknown = await cp.call("TransactionStarted", {})
    assert unknown[2] == "NotImplemented"  # not an OCPP 1.6 action (Table 7)
    not_ours = await cp.call("Reset", {"type": "Hard"})
    assert not_ours[2] == "NotSupported"  # a 1.6 action we do not serve
    missing = await cp.call("Authorize", {})
    assert missing[2] == "ProtocolError"
    wrong_type = await cp.call("Authorize", {"idTag": 12})
    assert wrong_type[2] == "TypeConstraintViolation"
    extra = await cp.call("Heartbeat", {"surprise": 1})
    assert extra[2] == "FormationViolation"
    bad_enum = await cp.call(
        "StatusNotification", {"connectorId": 1, "errorCode": "NoError", "status": "Sleeping"}
    )
    assert bad_enum[2] == "PropertyConstraintViolation"
    await cp.send_raw('[2, "m-short", "Heartbeat"]')
    assert (await cp.recv())[:3] == [4, "m-short", "ProtocolError"]
    await cp.send_raw(json.dumps([2, "x" * 37, "Heartbeat", {}]))
    assert (await cp.recv())[:3] == [4, "x" * 37, "TypeConstraintViolation"]
    await cp.send_raw('[2, "m-dict", {}, {}]')
    assert (await cp.recv())[:3] == [4, "m-dict", "NotImplemented"]
    assert "currentTime" in await cp.call("Heartbeat", {})
    await cp.close()


async def test_handler_failure_is_internal_error_and_connection_lives(
    adapter_server: AdapterServer,
) -> None:
    cp = await RawCharger.connect(f"{adapter_server.url}/CP-X")
    adapter_server.backend.crash = True
    error = await cp.call("Authorize", {"idTag": "T1"})
    assert error[2] == "InternalError"
    adapter_server.backend.crash = False
    assert (await cp.call("Authorize", {"idTag": "T1"}))["idTagInfo"]["status"] == "Accepted"
    await cp.close()


async def test_storage_unavailable_then_retry_succeeds(adapter_server: AdapterServer) -> None:
    cp = await RawCharger.connect(f"{adapter_server.url}/CP-S")
    stop = {"transactionId": 5, "meterStop": 1200, "timestamp": "2025-01-01T10:00:00Z"}
    adapter_server.backend.storage_failures = 1
    error = await cp.call("StopTransaction", stop)
    assert error[2] == "InternalError"
    assert await cp.call("StopTransaction", stop) == {}
    assert len(adapter_server.backend.requests("stop")) == 1
    await cp.close()


async def test_lenient_meter_values(adapter_server: AdapterServer) -> None:
    cp = await RawCharger.connect(f"{adapter_server.url}/CP-M")
    answer = await cp.call(
        "MeterValues",
        {
            "connectorId": 0,
            # Q6: an object instead of a list; Q5: numeric value; Q7: Celcius
            "meterValue": {
                "timestamp": "2025-01-01T10:00:00.123456789+02",
                "sampledValue": [
                    {"value": 1234.5},
                    {"value": "21", "measurand": "Temperature", "unit": "Celcius"},
                ],
            },
        },
    )
    assert answer == {}
    (request,) = adapter_server.backend.requests("meter")
    assert request.transaction_id is None
    first, second = request.meter_values[0].sampled_values
    assert (first.value, first.measurand, first.unit, first.context) == (
        "1234.5",
        "Energy.Active.Import.Register",
        "Wh",
        "Sample.Periodic",
    )
    assert second.unit == "Celcius"
    assert request.meter_values[0].timestamp.isoformat() == "2025-01-01T08:00:00.123456+00:00"
    empty = await cp.call(
        "MeterValues",
        {
            "connectorId": 1,
            "meterValue": [{"timestamp": "2025-01-01T10:00:00Z", "sampledValue": []}],
        },
    )
    assert empty == {}
    await cp.close()


async def test_lenient_transactions(adapter_server: AdapterServer) -> None:
    cp = await RawCharger.connect(f"{adapter_server.url}/CP-T")
    started = await cp.call(
        "StartTransaction",
        {"connectorId": 1, "idTag": "abc", "meterStart": 10.6, "timestamp": "2025-01-01T10:00:00"},
    )
    assert started == {"transactionId": 42, "idTagInfo": {"status": "Accepted"}}
    (start,) = adapter_server.backend.requests("start")
    assert start.meter_start == 11
    stopped = await cp.call(
        "StopTransaction",
        {
            "transactionId": -1,
            "meterStop": 20.2,
            "timestamp": "2025-01-01T11:00:00Z",
            "idTag": "abc",
        },
    )
    assert stopped == {"idTagInfo": {"status": "Accepted"}}
    (stop,) = adapter_server.backend.requests("stop")
    assert (stop.transaction_id, stop.meter_stop, stop.reason) == (-1, 20, "Local")
    status = await cp.call(
        "StatusNotification",
        {"connectorId": 1, "errorCode": "Error", "status": "Faulted", "info": "i" * 80},
    )
    assert status == {}
    (note,) = adapter_server.backend.requests("status")
    assert (note.error_code, note.info, note.timestamp) == ("Error", "i" * 80, None)
    await cp.close()


async def test_server_call_answered(adapter_server: AdapterServer) -> None:
    cp = await RawCharger.connect(f"{adapter_server.url}/CP-C")
    conn = await adapter_server.connection("CP-C")
    async with trio.open_nursery() as nursery:
        results = []

        async def send() -> None:
            results.append(await conn.send_command(Reset(type=ResetType.HARD)))

        nursery.start_soon(send)
        call = await cp.next_call()
        assert call[2:] == ["Reset", {"type": "Hard"}]
        await cp.answer(call, {"status": "Accepted"})
    assert results[0].status == "Accepted"
    await cp.close()


async def test_get_configuration_outcome(adapter_server: AdapterServer) -> None:
    cp = await RawCharger.connect(f"{adapter_server.url}/CP-G")
    conn = await adapter_server.connection("CP-G")
    async with trio.open_nursery() as nursery:
        results = []

        async def send() -> None:
            results.append(await conn.send_command(GetConfiguration(keys=("A", "Nope"))))

        nursery.start_soon(send)
        call = await cp.next_call()
        assert call[3] == {"key": ["A", "Nope"]}
        await cp.answer(
            call,
            {
                "configurationKey": [{"key": "A", "readonly": True, "value": "1"}],
                "unknownKey": ["Nope"],
            },
        )
    (outcome,) = results
    assert outcome.configuration[0].readonly
    assert outcome.unknown_keys == ("Nope",)
    await cp.close()


async def test_timeout_then_late_answer_is_dropped(adapter_server: AdapterServer) -> None:
    adapter_server.call_timeout = 0.3
    cp = await RawCharger.connect(f"{adapter_server.url}/CP-L")
    conn = await adapter_server.connection("CP-L")
    with pytest.raises(CommandError) as info:
        await conn.send_command(ChangeConfiguration(key="K", value="V"))
    assert info.value.code is CommandErrorCode.TIMEOUT
    late = await cp.next_call()
    await cp.answer(late, {"status": "Accepted"})  # too late: logged and dropped
    async with trio.open_nursery() as nursery:
        results = []

        async def send() -> None:
            results.append(await conn.send_command(ChangeConfiguration(key="K", value="W")))

        nursery.start_soon(send)
        call = await cp.next_call()
        assert call[3] == {"key": "K", "value": "W"}
        await cp.answer(call, {"status": "Rejected"})
    assert results[0].status == "Rejected"
    await cp.close()


async def test_callerror_answer(adapter_server: AdapterServer) -> None:
    cp = await RawCharger.connect(f"{adapter_server.url}/CP-CE")
    conn = await adapter_server.connection("CP-CE")
    async with trio.open_nursery() as nursery:
        errors = []

        async def send() -> None:
            try:
                await conn.send_command(RemoteStart(id_tag="T"))
            except CommandError as exc:
                errors.append(exc)

        nursery.start_soon(send)
        call = await cp.next_call()
        await cp.answer_error(call, "NotSupported", "no remote start here")
    assert errors[0].code is CommandErrorCode.CALL_ERROR
    assert "NotSupported" in errors[0].message
    await cp.close()


async def test_disconnect_mid_call_fails_at_once(adapter_server: AdapterServer) -> None:
    adapter_server.call_timeout = 30
    cp = await RawCharger.connect(f"{adapter_server.url}/CP-D")
    conn = await adapter_server.connection("CP-D")
    async with trio.open_nursery() as nursery:
        errors = []

        async def send() -> None:
            try:
                await conn.send_command(Reset(type=ResetType.SOFT))
            except CommandError as exc:
                errors.append(exc)

        nursery.start_soon(send)
        await cp.next_call()
        with trio.fail_after(10):  # the close handshake: ~0.01 s
            await cp.close()
    assert errors[0].code is CommandErrorCode.DISCONNECTED
    with pytest.raises(CommandError) as again:
        await conn.send_command(Reset(type=ResetType.SOFT))
    assert again.value.code is CommandErrorCode.DISCONNECTED


async def test_crossing_calls_and_one_outstanding_call(adapter_server: AdapterServer) -> None:
    cp = await RawCharger.connect(f"{adapter_server.url}/CP-O")
    conn = await adapter_server.connection("CP-O")
    async with trio.open_nursery() as nursery:
        results: list[str] = []

        async def send(n: int) -> None:
            outcome = await conn.send_command(ChangeConfiguration(key=f"K{n}", value="1"))
            results.append(outcome.status)

        for n in range(3):
            nursery.start_soon(send, n)
        first = await cp.next_call()
        # While our CALL waits, the charger's own CALL is answered (OCPP-J §4.1.1).
        assert "currentTime" in await cp.call("Heartbeat", {})
        # ...and no second CALL is on the wire while the first is unanswered.
        await cp.expect_silence(0.3)
        assert not cp.unanswered
        await cp.answer(first, {"status": "Accepted"})
        for _ in range(2):
            nxt = await cp.next_call()
            await cp.answer(nxt, {"status": "Accepted"})
    assert results == ["Accepted"] * 3
    await cp.close()


async def test_bad_command_arguments_are_not_sent(adapter_server: AdapterServer) -> None:
    cp = await RawCharger.connect(f"{adapter_server.url}/CP-V")
    conn = await adapter_server.connection("CP-V")
    with pytest.raises(CommandError) as info:
        await conn.send_command(RemoteStart(id_tag="T" * 21))
    assert info.value.code is CommandErrorCode.BAD_ARGUMENTS
    await cp.expect_silence(0.2)
    await cp.close()


async def test_a_fenced_node_sends_no_call(adapter_server: AdapterServer) -> None:
    """Issue 18: while the node's cluster lease is not known valid, no CALL leaves it,
    not even one that was waiting for its turn when the lease ran out."""
    fenced = False
    adapter_server.limits = ConnectionLimits(fenced=lambda: fenced)
    cp = await RawCharger.connect(f"{adapter_server.url}/CP-F")
    conn = await adapter_server.connection("CP-F")
    errors: list[CommandError] = []

    async def send() -> None:
        try:
            await conn.send_command(Reset(type=ResetType.SOFT))
        except CommandError as exc:
            errors.append(exc)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(send)
        first = await cp.next_call()  # sent while the lease is valid
        nursery.start_soon(send)  # waits for its turn behind the first
        await trio.sleep(0.1)
        fenced = True
        await cp.answer(first, {"status": "Accepted"})
    await cp.expect_silence(0.5)
    assert [e.code for e in errors] == [CommandErrorCode.DISCONNECTED]
    assert "cluster lease" in errors[0].message
    await cp.close()
