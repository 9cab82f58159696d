"""UpdateFirmware (OCPP 1.6 §5.19) and GetDiagnostics (§5.9) through the command layer,
against an independent charger: the CALL it receives, each answer the spec allows, the
audit, and arguments refused before anything is sent (OCTT TC_044_x, TC_045_x)."""

from __future__ import annotations

import trio

from tests.e2e.conftest import RunningServer
from tests.e2e.test_control import command_answered, control, online
from voltaro.store import commands


async def test_update_firmware_with_an_operator_location(server: RunningServer) -> None:
    cp = await online(server)
    client = await control(server)
    call, response = await command_answered(
        client,
        cp,
        "update-firmware",
        {},  # UpdateFirmware.conf is empty (§6.x)
        location="ftp://files.example.com/fw/acme-2.1.bin",
        retrieve_date="2030-01-02T03:04:05+01:00",
        retries=3,
        retry_interval=60,
    )
    assert call[2] == "UpdateFirmware"
    # FTP passes through unchanged; the time is sent in UTC with a Z.
    assert call[3] == {
        "location": "ftp://files.example.com/fw/acme-2.1.bin",
        "retrieveDate": "2030-01-02T02:04:05Z",
        "retries": 3,
        "retryInterval": 60,
    }
    assert response["ok"], response
    assert response["result"]["status"] == "Accepted"
    audit = server.run(commands.list_commands, "CP-1")[0]
    assert audit["action"] == "UpdateFirmware"
    assert audit["request"]["location"] == "ftp://files.example.com/fw/acme-2.1.bin"
    assert audit["status"] == "Accepted"
    await client.aclose()
    await cp.close()


async def test_update_firmware_without_a_date_means_now(server: RunningServer) -> None:
    cp = await online(server)
    client = await control(server)
    call, response = await command_answered(
        client, cp, "UpdateFirmware", {}, location="https://fw.example.com/a.bin"
    )
    assert set(call[3]) == {"location", "retrieveDate"}
    assert call[3]["retrieveDate"].endswith("Z")
    assert response["ok"]
    await client.aclose()
    await cp.close()


async def test_get_diagnostics_answers(server: RunningServer) -> None:
    cp = await online(server)
    client = await control(server)
    call, response = await command_answered(
        client,
        cp,
        "get-diagnostics",
        {"fileName": "diag-CP-1.zip"},
        location="ftp://user:pw@logs.example.com/incoming/",
        start_time="2030-01-01T00:00:00Z",
        stop_time="2030-01-02T00:00:00Z",
        retries=2,
        retry_interval=30,
    )
    assert call[2:] == [
        "GetDiagnostics",
        {
            "location": "ftp://user:pw@logs.example.com/incoming/",
            "startTime": "2030-01-01T00:00:00Z",
            "stopTime": "2030-01-02T00:00:00Z",
            "retries": 2,
            "retryInterval": 30,
        },
    ]
    assert response["result"]["status"] == "Accepted"
    assert response["result"]["details"] == {"file_name": "diag-CP-1.zip"}
    # No fileName: the charger has no diagnostics information (§6.x GetDiagnostics.conf).
    _, empty = await command_answered(
        client, cp, "get-diagnostics", {}, location="http://logs.example.com/up/"
    )
    assert empty["result"]["status"] == "NoDiagnostics"
    assert empty["result"]["details"] == {"file_name": None}
    statuses = [a["status"] for a in server.run(commands.list_commands, "CP-1")]
    assert statuses == ["NoDiagnostics", "Accepted"]
    await client.aclose()
    await cp.close()


async def test_a_callerror_answer_is_reported_and_audited(server: RunningServer) -> None:
    cp = await online(server)
    client = await control(server)
    results = []
    async with trio.open_nursery() as nursery:

        async def send() -> None:
            results.append(
                await client.command("CP-1", "update-firmware", location="http://x.example/a")
            )

        nursery.start_soon(send)
        call = await cp.next_call()
        await cp.answer_error(call, "NotSupported", "no firmware profile")
    assert not results[0]["ok"]
    assert results[0]["error"]["code"] == "call_error"
    audit = server.run(commands.list_commands, "CP-1")[0]
    assert audit["action"] == "UpdateFirmware"
    assert "call_error" in audit["error"]
    await client.aclose()
    await cp.close()


async def test_bad_arguments_send_nothing(server: RunningServer) -> None:
    cp = await online(server)
    client = await control(server)
    cases = [
        ("update-firmware", {}, "location is required"),
        ("update-firmware", {"location": "file:///etc/passwd"}, "location must be"),
        ("update-firmware", {"location": "http://x/a", "retries": -1}, "retries"),
        ("update-firmware", {"location": "http://x/a", "retrieve_date": "soon"}, "ISO 8601"),
        (
            "get-diagnostics",
            {
                "location": "ftp://x/",
                "start_time": "2030-01-02T00:00:00Z",
                "stop_time": "2030-01-01T00:00:00Z",
            },
            "before start",
        ),
    ]
    for action, args, reason in cases:
        response = await client.command("CP-1", action, **args)
        assert not response["ok"], (action, args)
        assert response["error"]["code"] == "bad_arguments"
        assert reason in response["error"]["message"], response
    await cp.expect_silence()
    assert server.run(commands.list_commands, "CP-1") == []
    await client.aclose()
    await cp.close()
