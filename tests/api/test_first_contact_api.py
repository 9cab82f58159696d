"""HTTP API (issue 13): the one code for an unknown charger, and the command audit."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import trio

from tests.api.conftest import ADMIN, OPERATE, READ, client
from tests.e2e.conftest import RunningServer
from tests.support.charger import RawCharger
from voltaro.store import chargers


async def test_unknown_charger_is_not_found_in_every_route(api: tuple[RunningServer, str]) -> None:
    _, base = api
    async with client(base, ADMIN) as http:
        for response in (
            await http.get("/charge_points/NOPE"),
            await http.post("/charge_points/NOPE/commands/reset", json={"type": "Soft"}),
            await http.post("/charge_points/NOPE/commands/remote-start", json={"id_tag": "T1"}),
            await http.post("/charge_points/NOPE/commands/Reset"),
            await http.post("/charge_points/NOPE/commands/get-config"),
        ):
            assert response.status_code == 404, response.text
            assert response.json()["error"]["code"] == "not_found"
            assert "NOPE" in response.json()["error"]["message"]


async def _command(cp: RawCharger, answer: dict[str, Any], send: Any) -> Any:
    result: list[Any] = []

    async def run() -> None:
        result.append(await send())

    async with trio.open_nursery() as nursery:
        nursery.start_soon(run)
        await cp.answer(await cp.next_call(timeout=15), answer)
    return result[0]


async def test_command_audit(api: tuple[RunningServer, str]) -> None:
    server, base = api
    server.run(chargers.add_charger, "CP-1")
    server.run(chargers.add_charger, "CP-2")
    one = await RawCharger.connect(f"{server.url}/CP-1")
    two = await RawCharger.connect(f"{server.url}/CP-2")
    await one.boot()
    await two.boot()
    async with client(base, OPERATE) as ops, client(base, READ) as reader:
        reset = await _command(
            one,
            {"status": "Accepted"},
            lambda: ops.post("/charge_points/CP-1/commands/reset", json={"type": "Soft"}),
        )
        assert reset.status_code == 200, reset.text
        unlock = await _command(
            two,
            {"status": "Unlocked"},
            lambda: ops.post("/charge_points/CP-2/commands/unlock", json={"connector_id": 1}),
        )
        assert unlock.status_code == 200, unlock.text
        page = await reader.get("/commands")
        assert page.status_code == 200, page.text
        body = page.json()
        assert body["total"] == 2
        assert [(c["charger_id"], c["action"], c["status"]) for c in body["items"]] == [
            ("CP-2", "UnlockConnector", "Unlocked"),
            ("CP-1", "Reset", "Accepted"),
        ]
        latest = body["items"][0]
        assert latest["actor"] == "api:ops"  # the token's name
        assert latest["request"] == {"connector_id": 1}
        assert latest["requested_at"].endswith("Z")
        assert latest["finished_at"] is not None
        one_charger = (await reader.get("/commands", params={"charge_point_id": "CP-1"})).json()
        assert [c["action"] for c in one_charger["items"]] == ["Reset"]
        assert one_charger["total"] == 1
        future = (datetime.now(UTC) + timedelta(minutes=5)).isoformat()
        assert (await reader.get("/commands", params={"since": future})).json()["total"] == 0
        second = (await reader.get("/commands", params={"limit": 1, "offset": 1})).json()
        assert [c["action"] for c in second["items"]] == ["Reset"]
        assert second["total"] == 2
        assert (await reader.get("/commands", params={"since": "soon"})).status_code == 422
        tags_page = await reader.get("/id_tags")
        assert tags_page.headers["x-total-count"] == str(len(tags_page.json()))
        async with client(base, None) as anonymous:
            assert (await anonymous.get("/commands")).status_code == 401
            document = (await anonymous.get("/openapi.json")).json()
        assert "/commands" in document["paths"]
        parameters = {p["name"] for p in document["paths"]["/commands"]["get"]["parameters"]}
        assert {"charge_point_id", "since", "limit", "offset"} <= parameters
    await one.close()
    await two.close()


async def test_openapi_document_is_complete(api: tuple[RunningServer, str]) -> None:
    """Every route the server answers is described: a group, a description, its errors."""
    _, base = api
    async with client(base, None) as anonymous:
        document = (await anonymous.get("/openapi.json")).json()
    assert document["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    operations = [
        (path, method, operation)
        for path, methods in document["paths"].items()
        for method, operation in methods.items()
    ]
    assert len(operations) >= 20
    for path, method, operation in operations:
        where = f"{method.upper()} {path}"
        assert operation.get("tags"), where
        assert operation.get("summary"), where
        assert operation.get("description"), where
        responses = operation["responses"]
        if not path.startswith("/health/"):
            assert operation.get("security"), where
            assert {"401", "403"} <= set(responses), where
        if "requestBody" in operation:
            assert {"400", "422"} <= set(responses), where
        if "{" in path:
            assert "404" in responses, where
    for path in ("/charge_points", "/id_tags"):
        assert "X-Total-Count" in document["paths"][path]["get"]["responses"]["200"]["headers"]
    assert set(document["paths"]) >= {"/commands", "/sessions", "/status", "/health/ready"}
