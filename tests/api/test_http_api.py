"""The HTTP API of a running server, with an HTTP client and an independent charger."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import trio

from tests.api.conftest import ADMIN, OPERATE, READ, client
from tests.e2e.conftest import RunningServer, server_settings, start_server
from tests.support.charger import RawCharger
from tests.support.scripted import scripted
from voltaro.store import chargers, tags


async def test_auth_refusals(api: tuple[RunningServer, str]) -> None:
    _, base = api
    async with client(base, None) as anonymous:
        response = await anonymous.get("/charge_points")
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == "Bearer"
        assert response.json()["error"]["code"] == "unauthorized"
    async with client(base, "wrong-token-0123456789") as wrong:
        assert (await wrong.get("/status")).status_code == 401
    async with client(base, READ) as reader:
        refused = await reader.post("/id_tags", json={"id_tag": "X1"})
        assert refused.status_code == 403
        refused = await reader.post("/charge_points/CP-1/commands/reset", json={})
        assert refused.status_code == 403


async def test_read_endpoints(api: tuple[RunningServer, str]) -> None:
    server, base = api
    server.run(chargers.add_charger, "CP-1")
    server.run(tags.add_tag, "T1")
    cp = await RawCharger.connect(f"{server.url}/CP-1")
    await cp.boot(vendor="Acme", model="Fast")
    await cp.call(
        "StatusNotification", {"connectorId": 1, "errorCode": "NoError", "status": "Charging"}
    )
    started = await cp.call(
        "StartTransaction",
        {"connectorId": 1, "idTag": "T1", "meterStart": 100, "timestamp": "2025-01-01T10:00:00Z"},
    )
    await cp.call(
        "MeterValues",
        {
            "connectorId": 1,
            "transactionId": started["transactionId"],
            "meterValue": [
                {"timestamp": "2025-01-01T10:05:00Z", "sampledValue": [{"value": "600"}]}
            ],
        },
    )
    async with client(base) as http:
        status = (await http.get("/status")).json()
        assert status["connected_chargers"] == 1
        assert status["active_transactions"] == 1
        assert status["database"]["ok"] is True
        points = (await http.get("/charge_points")).json()
        assert points[0]["connected"] is True
        assert points[0]["vendor"] == "Acme"
        one = (await http.get("/charge_points/CP-1")).json()
        assert one["connectors"][0]["status"] == "Charging"
        assert (await http.get("/charge_points/NOPE")).status_code == 404
        page = (await http.get("/sessions", params={"active": "true"})).json()
        assert page["total"] == 1
        assert page["items"][0]["transaction_id"] == started["transactionId"]
        detail = (await http.get(f"/sessions/{started['transactionId']}")).json()
        assert detail["meter_values"][0]["sampled_values"][0]["value"] == "600"
        assert (await http.get("/sessions/424242")).status_code == 404
        assert (await http.get("/sessions", params={"limit": 0})).status_code == 422
        filtered = (await http.get("/sessions", params={"charge_point_id": "OTHER"})).json()
        assert filtered["total"] == 0
    await cp.close()


async def test_id_tags_crud(api: tuple[RunningServer, str]) -> None:
    _, base = api
    async with client(base, OPERATE) as http:
        created = await http.post("/id_tags", json={"id_tag": "04AB", "status": "Accepted"})
        assert created.status_code == 201
        assert (await http.post("/id_tags", json={"id_tag": "04ab"})).status_code == 409
        assert (await http.post("/id_tags", json={"id_tag": "X" * 21})).status_code == 422
        patched = await http.patch("/id_tags/04AB", json={"status": "Blocked"})
        assert patched.json()["status"] == "Blocked"
        assert [t["id_tag"] for t in (await http.get("/id_tags")).json()] == ["04AB"]
        assert (await http.delete("/id_tags/04AB")).status_code == 204
        assert (await http.delete("/id_tags/04AB")).status_code == 404


async def test_command_error_mapping(api: tuple[RunningServer, str]) -> None:
    server, base = api
    server.run(chargers.add_charger, "CP-1")
    server.run(chargers.add_charger, "CP-OFF")
    cp = await RawCharger.connect(f"{server.url}/CP-1")
    await cp.boot()
    async with client(base, ADMIN) as http:
        assert (await http.post("/charge_points/NOPE/commands/reset")).status_code == 404
        assert (await http.post("/charge_points/CP-OFF/commands/reset")).status_code == 409
        bad = await http.post(
            "/charge_points/CP-1/commands/remote-start", json={"id_tag": "T" * 21}
        )
        assert bad.status_code == 422
        assert (await http.post("/charge_points/CP-1/commands/fly")).status_code == 404
        results: list[Any] = []
        async with trio.open_nursery() as nursery:

            async def send(path: str, body: dict[str, Any]) -> None:
                results.append(await http.post(path, json=body))

            nursery.start_soon(send, "/charge_points/CP-1/commands/Reset", {"type": "Hard"})
            call = await cp.next_call()
            assert call[2:] == ["Reset", {"type": "Hard"}]
            await cp.answer(call, {"status": "Accepted"})
        assert results[-1].status_code == 200
        assert results[-1].json() == {"action": "Reset", "status": "Accepted"}
        async with trio.open_nursery() as nursery:
            nursery.start_soon(send, "/charge_points/CP-1/commands/clear-cache", {})
            call = await cp.next_call()
            await cp.answer_error(call, "InternalError", "boom")
        assert results[-1].status_code == 502
        timed_out = await http.post("/charge_points/CP-1/commands/clear-cache")
        assert timed_out.status_code == 504
        assert timed_out.json()["error"]["code"] == "timeout"
    await cp.close()


async def test_disabled_cleanly(database_url: str, tmp_path: Path) -> None:
    settings = server_settings(database_url, tmp_path, http_enabled=False)
    async with trio.open_nursery() as nursery:
        server, stop = await start_server(nursery, settings)
        assert server.addresses.http is None
        stop.set()
        server.db.dispose()


async def test_remote_start_checks_the_tag_unless_forced(api: tuple[RunningServer, str]) -> None:
    """Issue 23.3 through the API: 422 with a one-line reason; body field force sends."""
    server, base = api
    server.run(chargers.add_charger, "CP-1")
    cp = await RawCharger.connect(f"{server.url}/CP-1")
    await cp.boot()
    path = "/charge_points/CP-1/commands/remote-start"
    async with client(base, OPERATE) as http:
        refused = await http.post(path, json={"id_tag": "NOSUCHTAG"})
        assert refused.status_code == 422
        assert refused.json()["error"]["code"] == "bad_arguments"
        assert "tag NOSUCHTAG is unknown" in refused.json()["error"]["message"]
        bad_force = await http.post(path, json={"id_tag": "NOSUCHTAG", "force": "yes"})
        assert bad_force.status_code == 422
        results: list[Any] = []
        async with trio.open_nursery() as nursery:

            async def send() -> None:
                results.append(await http.post(path, json={"id_tag": "NOSUCHTAG", "force": True}))

            nursery.start_soon(send)
            call = await cp.next_call()
            await cp.answer(call, {"status": "Accepted"})
        assert call[2:] == ["RemoteStartTransaction", {"idTag": "NOSUCHTAG"}]
        assert results[0].status_code == 200
        assert results[0].json()["status"] == "Accepted"
    await cp.close()


async def test_admin_scope_mirrors_the_socket_roles(api: tuple[RunningServer, str]) -> None:
    server, base = api
    server.run(chargers.add_charger, "CP-1")
    async with client(base, OPERATE) as http:
        for path, body in (
            ("/charge_points/CP-1/commands/reset", {"type": "Hard"}),
            ("/charge_points/CP-1/commands/set-config", {"key": "K", "value": "1"}),
            ("/charge_points/CP-1/commands/ChangeConfiguration", {"key": "K", "value": "1"}),
        ):
            refused = await http.post(path, json=body)
            assert refused.status_code == 403, (path, refused.text)
            assert refused.json()["error"]["code"] == "forbidden"
        # A soft reset is an operator's: it gets past the scope check (charger offline).
        soft = await http.post("/charge_points/CP-1/commands/reset", json={"type": "Soft"})
        assert soft.status_code == 409
    async with client(base, ADMIN) as http:
        hard = await http.post("/charge_points/CP-1/commands/reset", json={"type": "Hard"})
        assert hard.status_code == 409  # allowed; the charger is offline


async def test_typed_command_bodies(api: tuple[RunningServer, str]) -> None:
    server, base = api
    server.run(chargers.add_charger, "CP-1")
    async with client(base, OPERATE) as http:
        typo = await http.post(
            "/charge_points/CP-1/commands/remote-start", json={"id_tag": "T", "conector_id": 2}
        )
        assert typo.status_code == 422
        assert "conector_id" in typo.json()["error"]["message"]
        malformed = await http.post(
            "/charge_points/CP-1/commands/remote-start",
            content=b'{"id_tag": "T",',
            headers={"content-type": "application/json"},
        )
        assert malformed.status_code == 400
        assert malformed.json() == {
            "error": {"code": "bad_request", "message": "the request body is not valid JSON"}
        }
    async with client(base, None) as anonymous:
        document = (await anonymous.get("/openapi.json")).json()
    paths = document["paths"]
    for name in ("remote-start", "remote-stop", "reset", "unlock", "availability"):
        assert f"/charge_points/{{charger_id}}/commands/{name}" in paths
    for name in ("get-config", "set-config", "clear-cache", "data-transfer", "trigger"):
        assert f"/charge_points/{{charger_id}}/commands/{name}" in paths
    assert "/charge_points/{charger_id}/commands/{command}" not in paths
    schemes = document["components"]["securitySchemes"]
    assert schemes["HTTPBearer"]["scheme"] == "bearer"
    start = document["components"]["schemas"]["RemoteStartBody"]
    assert start["additionalProperties"] is False


async def test_charge_points_connected_filter_and_active_sessions(
    api: tuple[RunningServer, str],
) -> None:
    server, base = api
    server.run(chargers.add_charger, "CP-ON")
    server.run(chargers.add_charger, "CP-OFF")
    server.run(tags.add_tag, "T1")
    cp = await RawCharger.connect(f"{server.url}/CP-ON")
    await cp.boot()
    started = await cp.call(
        "StartTransaction",
        {"connectorId": 1, "idTag": "T1", "meterStart": 100, "timestamp": "2025-01-01T10:00:00Z"},
    )
    async with client(base, READ) as http:
        online = await http.get("/charge_points", params={"connected": "true"})
        offline = await http.get("/charge_points", params={"connected": "false"})
        every = await http.get("/charge_points")
    assert [c["charger_id"] for c in online.json()] == ["CP-ON"]
    assert [c["charger_id"] for c in offline.json()] == ["CP-OFF"]
    assert online.headers["x-total-count"] == "1"
    assert every.headers["x-total-count"] == "2"
    (on,) = online.json()
    assert [t["transaction_id"] for t in on["active_transactions"]] == [started["transactionId"]]
    assert offline.json()[0]["active_transactions"] == []
    await cp.close()


async def test_smart_charging_routes(api: tuple[RunningServer, str]) -> None:
    """Issue 16: set (checked first), list, composite and clear over HTTP."""
    server, base = api
    server.run(chargers.add_charger, "CP-1")
    cp = await RawCharger.connect(f"{server.url}/CP-1")
    await cp.boot()
    answers = {
        "GetConfiguration": {"configurationKey": []},
        "SetChargingProfile": {"status": "Accepted"},
        "ClearChargingProfile": {"status": "Accepted"},
        "GetCompositeSchedule": {"status": "Rejected"},
    }
    profile = {
        "chargingProfileId": 3,
        "stackLevel": 0,
        "chargingProfilePurpose": "ChargePointMaxProfile",
        "chargingProfileKind": "Relative",
        "chargingSchedule": {
            "chargingRateUnit": "W",
            "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 11000}],
        },
    }
    handlers = {action: (lambda payload, a=answer: a) for action, answer in answers.items()}
    async with client(base, OPERATE) as http, scripted(cp, handlers):
        refused = await http.post(
            "/charge_points/CP-1/charging_profiles", json={"connector_id": 1, "profile": profile}
        )
        assert refused.status_code == 422
        assert "connector 0 only" in refused.json()["error"]["message"]
        ok = await http.post(
            "/charge_points/CP-1/charging_profiles", json={"connector_id": 0, "profile": profile}
        )
        assert ok.status_code == 200, ok.text
        assert ok.json()["status"] == "Accepted"
        listed = (await http.get("/charge_points/CP-1/charging_profiles")).json()
        assert [p["profile_id"] for p in listed] == [3]
        composite = await http.get(
            "/charge_points/CP-1/composite_schedule", params={"connector_id": 0, "duration": 60}
        )
        assert composite.json()["status"] == "Rejected"
        cleared = await http.post(
            "/charge_points/CP-1/charging_profiles/clear", json={"profile_id": 3}
        )
        assert cleared.json() == {
            "action": "ClearChargingProfile",
            "status": "Accepted",
            "cleared": 1,
        }
        assert (await http.get("/charge_points/CP-1/charging_profiles")).json() == []
