"""Local Authorization List Management (OCPP 1.6 §5.7, §5.15; OCTT TC_042_1/2,
TC_043_1/3/4/5): GetLocalListVersion and SendLocalList through `local_list.sync`,
against an independent raw-frame charger that keeps a list with versions."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import trio

from tests.e2e.conftest import RunningServer
from tests.e2e.control_client import ControlClient
from tests.support.charger import RawCharger
from tests.support.scripted import HANG_UP, NO_ANSWER, scripted
from voltaro.domain.model import AuthorizationStatus
from voltaro.store import chargers, local_lists, tags
from voltaro.store import commands as audit


class ListCharger:
    """The charger side of §5.15: Full replaces, Differential needs a higher version."""

    def __init__(
        self,
        *,
        version: int = 0,
        enabled: str = "true",
        max_list: str = "100",
        max_send: str = "100",
    ) -> None:
        self.version = version
        self.list: dict[str, dict[str, Any]] = {}
        self.config = {
            "LocalAuthListEnabled": enabled,
            "LocalAuthListMaxLength": max_list,
            "SendLocalListMaxLength": max_send,
        }
        self.answers: list[Any] = []  # scripted answers to the next SendLocalLists

    def get_configuration(self, payload: dict[str, Any]) -> dict[str, Any]:
        keys = payload.get("key") or list(self.config)
        return {
            "configurationKey": [
                {"key": k, "readonly": k != "LocalAuthListEnabled", "value": self.config[k]}
                for k in keys
                if k in self.config
            ],
            "unknownKey": [k for k in keys if k not in self.config],
        }

    def get_version(self, payload: dict[str, Any]) -> dict[str, Any]:
        return {"listVersion": self.version}

    def send_local_list(self, payload: dict[str, Any]) -> Any:
        if self.answers:
            answer = self.answers.pop(0)
            if answer is not None:
                return answer if answer in (NO_ANSWER, HANG_UP) else {"status": answer}
        if payload["updateType"] == "Differential" and payload["listVersion"] <= self.version:
            return {"status": "VersionMismatch"}
        new = {} if payload["updateType"] == "Full" else dict(self.list)
        for entry in payload.get("localAuthorizationList", []):
            if "idTagInfo" in entry:
                new[entry["idTag"].upper()] = entry["idTagInfo"]
            else:
                new.pop(entry["idTag"].upper(), None)
        self.list, self.version = new, payload["listVersion"]
        return {"status": "Accepted"}

    def handlers(self) -> dict[str, Any]:
        return {
            "GetConfiguration": self.get_configuration,
            "GetLocalListVersion": self.get_version,
            "SendLocalList": self.send_local_list,
        }


async def online(server: RunningServer, charger_id: str = "CP-1") -> RawCharger:
    server.run(chargers.add_charger, charger_id)
    cp = await RawCharger.connect(f"{server.url}/{charger_id}")
    await cp.boot()
    return cp


@asynccontextmanager
async def control(server: RunningServer) -> AsyncIterator[ControlClient]:
    assert server.addresses.control_socket is not None
    client = await ControlClient.connect(server.addresses.control_socket)
    try:
        yield client
    finally:
        await client.aclose()


async def sync(client: ControlClient, *ids: str, full: bool = False) -> list[dict[str, Any]]:
    response = await client.request(
        "local_list.sync", {"charger_ids": list(ids), "full": full}, timeout=30
    )
    assert response["ok"], response
    result: list[dict[str, Any]] = response["result"]
    return result


async def test_get_local_list_version_not_supported_and_empty(server: RunningServer) -> None:
    """TC_042_1 (-1: no local list support) and TC_042_2 (0: empty list)."""
    cp = await online(server)
    async with control(server) as client:
        charger = ListCharger(version=-1)
        async with scripted(cp, charger.handlers()) as script:
            response = await client.command("CP-1", "local-list-version")
            assert response["result"]["details"] == {"list_version": -1}
            (result,) = await sync(client, "CP-1")
            assert result["result"] == "NotSupported"
            assert result["ok"] is False
            assert "SendLocalList" not in script.actions()  # nothing sent to such a charger
            charger.version = 0
            response = await client.command("CP-1", "GetLocalListVersion")
            assert response["result"]["details"] == {"list_version": 0}
        state = server.run(local_lists.list_state, "CP-1")
        assert state["result"] == "NotSupported"
        actions = [c["action"] for c in server.run(audit.list_commands, "CP-1")]
        assert actions.count("GetLocalListVersion") == 3  # audited like every command


async def test_full_then_differential(server: RunningServer) -> None:
    """TC_043_4 (Full) then TC_043_5 (Differential): only the changes, version + 1."""
    server.run(tags.add_tag, "PARENT")
    server.run(tags.add_tag, "A1", parent="PARENT")
    server.run(tags.add_tag, "B2")
    server.run(tags.add_tag, "C3")
    cp = await online(server)
    async with control(server) as client:
        charger = ListCharger(version=0, enabled="false")  # no automatic push in this test
        async with scripted(cp, charger.handlers()) as script:
            (first,) = await sync(client, "CP-1")
            assert first["result"] == "Accepted", first
            assert (first["update_type"], first["version"], first["entries"]) == ("Full", 1, 4)
            (full,) = script.payloads("SendLocalList")
            assert full["updateType"] == "Full"
            by_tag = {e["idTag"]: e["idTagInfo"] for e in full["localAuthorizationList"]}
            assert by_tag["A1"] == {"status": "Accepted", "parentIdTag": "PARENT"}
            assert sorted(charger.list) == ["A1", "B2", "C3", "PARENT"]

            server.run(tags.block_tag, "B2")
            server.run(tags.remove_tag, "C3")
            server.run(tags.add_tag, "D4")
            (second,) = await sync(client, "CP-1")
            assert (second["result"], second["update_type"], second["version"]) == (
                "Accepted",
                "Differential",
                2,
            )
            diff = script.payloads("SendLocalList")[1]
            assert diff["listVersion"] == 2
            assert diff["localAuthorizationList"] == [
                {"idTag": "B2", "idTagInfo": {"status": "Blocked"}},
                {"idTag": "C3"},  # no idTagInfo: removed from the list
                {"idTag": "D4", "idTagInfo": {"status": "Accepted"}},
            ]
            assert charger.list["B2"] == {"status": "Blocked"}
            assert "C3" not in charger.list

            (third,) = await sync(client, "CP-1")
            assert third["result"] == "up-to-date"
            assert len(script.payloads("SendLocalList")) == 2  # nothing new sent
        assert server.run(local_lists.list_state, "CP-1")["version"] == 2


async def test_answers_not_supported_and_failed(server: RunningServer) -> None:
    """TC_043_1 (NotSupported) and TC_043_3 (Failed): recorded; after Failed the next
    sync sends a Full list, since what the charger holds is unknown."""
    server.run(tags.add_tag, "A1")
    cp = await online(server)
    async with control(server) as client:
        charger = ListCharger(enabled="false")
        charger.answers = ["NotSupported"]
        async with scripted(cp, charger.handlers()) as script:
            (result,) = await sync(client, "CP-1")
            assert (result["result"], result["ok"], result["messages"]) == (
                "NotSupported",
                False,
                0,
            )
            assert server.run(local_lists.list_state, "CP-1")["result"] == "NotSupported"

            assert (await sync(client, "CP-1"))[0]["result"] == "Accepted"
            server.run(tags.add_tag, "B2")
            charger.answers = ["Failed"]
            (failed,) = await sync(client, "CP-1")
            assert failed["result"] == "Failed"
            assert "answered Failed" in failed["detail"]
            state = server.run(local_lists.list_state, "CP-1")
            assert (state["result"], state["version"]) == ("Failed", None)

            (again,) = await sync(client, "CP-1")
            assert (again["result"], again["update_type"]) == ("Accepted", "Full")
            assert script.payloads("SendLocalList")[-1]["updateType"] == "Full"
        statuses = [
            c["status"]
            for c in server.run(audit.list_commands, "CP-1")
            if c["action"] == "SendLocalList"
        ]
        assert sorted(statuses) == ["Accepted", "Accepted", "Failed", "NotSupported"]


async def test_version_mismatch_falls_back_to_full(server: RunningServer) -> None:
    server.run(tags.add_tag, "A1")
    cp = await online(server)
    async with control(server) as client:
        charger = ListCharger(enabled="false")
        async with scripted(cp, charger.handlers()) as script:
            assert (await sync(client, "CP-1"))[0]["version"] == 1
            server.run(tags.add_tag, "B2")
            charger.answers = ["VersionMismatch"]  # to the Differential update
            (result,) = await sync(client, "CP-1")
            assert (result["result"], result["update_type"]) == ("Accepted", "Full"), result
            kinds = [p["updateType"] for p in script.payloads("SendLocalList")]
            assert kinds == ["Full", "Differential", "Full"]
            assert sorted(charger.list) == ["A1", "B2"]


async def test_charger_reporting_another_version_gets_a_full_list(server: RunningServer) -> None:
    server.run(tags.add_tag, "A1")
    cp = await online(server)
    async with control(server) as client:
        charger = ListCharger(enabled="false")
        async with scripted(cp, charger.handlers()) as script:
            await sync(client, "CP-1")
            charger.version = 42  # someone else (or a reset) changed the charger's list
            (result,) = await sync(client, "CP-1")
            assert (result["update_type"], result["version"]) == ("Full", 43)
            assert "holds version 42, last sent 1" in result["detail"]
            assert script.payloads("SendLocalList")[-1]["listVersion"] == 43


async def test_limits_from_the_chargers_configuration(server: RunningServer) -> None:
    """SendLocalListMaxLength splits the list; LocalAuthListMaxLength refuses it."""
    for name in ("A1", "B2", "C3", "D4", "E5"):
        server.run(tags.add_tag, name)
    cp = await online(server)
    async with control(server) as client:
        charger = ListCharger(enabled="false", max_send="2", max_list="10")
        async with scripted(cp, charger.handlers()) as script:
            (result,) = await sync(client, "CP-1")
            assert (result["result"], result["messages"], result["version"]) == ("Accepted", 3, 3)
            sent = script.payloads("SendLocalList")
            assert [(p["updateType"], len(p["localAuthorizationList"])) for p in sent] == [
                ("Full", 2),
                ("Differential", 2),
                ("Differential", 1),
            ]
            assert len(charger.list) == 5

            charger.config["LocalAuthListMaxLength"] = "4"
            server.run(tags.add_tag, "F6")
            (refused,) = await sync(client, "CP-1")
            assert refused["result"] == "refused"
            assert "holds at most 4" in refused["detail"]
            assert len(script.payloads("SendLocalList")) == 3  # nothing sent


async def test_timeout_mid_sync_then_resume(server: RunningServer) -> None:
    """The second of two messages is never answered: the sync reports the timeout; the
    next sync asks the version and goes on from what the charger holds."""
    server.run(tags.add_tag, "A1")
    server.run(tags.add_tag, "B2")
    cp = await online(server)
    async with control(server) as client:
        charger = ListCharger(enabled="false", max_send="1")
        charger.answers = [None, NO_ANSWER]
        async with scripted(cp, charger.handlers()) as script:
            (result,) = await sync(client, "CP-1")
            assert (result["result"], result["error_code"], result["messages"]) == (
                "error",
                "timeout",
                1,
            )
            assert "message 2 of 2" in result["detail"]
            assert server.run(local_lists.list_state, "CP-1")["version"] == 1
            (resumed,) = await sync(client, "CP-1")
            assert (resumed["result"], resumed["update_type"], resumed["version"]) == (
                "Accepted",
                "Differential",
                2,
            )
            assert script.payloads("SendLocalList")[-1]["localAuthorizationList"] == [
                {"idTag": "B2", "idTagInfo": {"status": "Accepted"}}
            ]


async def test_disconnect_mid_sync(server: RunningServer) -> None:
    server.run(tags.add_tag, "A1")
    cp = await online(server)
    async with control(server) as client:
        charger = ListCharger(enabled="false")
        charger.answers = [HANG_UP]
        async with scripted(cp, charger.handlers()):
            (result,) = await sync(client, "CP-1")
        assert (result["result"], result["error_code"]) == ("error", "disconnected")
        rows = [
            c for c in server.run(audit.list_commands, "CP-1") if c["action"] == "SendLocalList"
        ]
        assert rows[0]["error"].startswith("disconnected")
        state = server.run(local_lists.list_state, "CP-1")
        assert state["result"] == "error"
        assert state["version"] is None  # nothing accepted: the next sync is Full
        # Offline now: the sync says so without sending anything.
        (offline,) = await sync(client, "CP-1")
        assert offline["error_code"] == "offline"


async def test_tag_changes_are_pushed_to_enabled_chargers(server: RunningServer) -> None:
    server.run(tags.add_tag, "A1")
    cp = await online(server)
    other = await online(server, "CP-2")
    async with control(server) as client:
        enabled, disabled = ListCharger(), ListCharger(enabled="false")
        async with scripted(cp, enabled.handlers()), scripted(other, disabled.handlers()) as off:
            results = await sync(client, "CP-1", "CP-2")
            assert [r["result"] for r in results] == ["Accepted", "Accepted"]
            response = await client.request("tags.block", {"id_tag": "A1"})
            assert response["ok"]
            with trio.fail_after(10):
                while enabled.version < 2:  # noqa: ASYNC110 - the charger's state, with a deadline
                    await trio.sleep(0.05)
            assert enabled.list["A1"] == {"status": "Blocked"}
            await trio.sleep(0.3)  # give a wrong push to CP-2 its chance to show up
            assert len(off.payloads("SendLocalList")) == 1
        pushes = [
            c
            for c in server.run(audit.list_commands, "CP-1")
            if c["action"] == "SendLocalList" and c["actor"] == "system:local-list"
        ]
        assert pushes
        assert pushes[0]["request"]["id_tags"] == ["A1"]
        assert server.run(tags.get_tag, "A1").status is AuthorizationStatus.BLOCKED
