"""Local lists per charger group (issue 16: "one list for all chargers, or per group"):
a charger in a group gets the tags of its group and the tags limited to no group; a
charger in no group gets the all-chargers list. Versions stay per charger; moving a
charger or a tag between groups sends only the difference. Over the control socket,
`voltaro ctl` and the HTTP API, against independent raw-frame chargers."""

from __future__ import annotations

import json
from typing import Any

import trio

from tests.api.conftest import OPERATE, api
from tests.api.conftest import client as api_client
from tests.e2e.conftest import RunningServer
from tests.e2e.test_ctl import ctl
from tests.e2e.test_local_list import ListCharger, control, online, sync
from tests.support.scripted import scripted
from voltaro.store import chargers, local_lists, tags

__all__ = ["api"]


async def test_each_group_gets_its_own_list(server: RunningServer) -> None:
    server.run(tags.add_tag, "ALL")
    cps = {cid: await online(server, cid) for cid in ("CP-N", "CP-S", "CP-X")}
    lists = {cid: ListCharger(enabled="false") for cid in cps}  # no automatic push here
    async with control(server) as client:
        for cid, group in (("CP-N", "north"), ("CP-S", "south")):
            moved = await client.request("chargers.set_group", {"charger_id": cid, "group": group})
            assert moved["ok"], moved
            assert moved["result"]["list_group"] == group
        for tag, groups in (("N1", ["north"]), ("S1", ["south"]), ("NS", ["south", "north"])):
            added = await client.request("tags.add", {"id_tag": tag, "groups": groups})
            assert added["ok"], added
        assert server.run(tags.get_tag, "NS").groups == ("north", "south")
        async with (
            scripted(cps["CP-N"], lists["CP-N"].handlers()),
            scripted(cps["CP-S"], lists["CP-S"].handlers()),
            scripted(cps["CP-X"], lists["CP-X"].handlers()) as script_x,
        ):
            results = await sync(client, "CP-N", "CP-S", "CP-X")
            assert [(r["result"], r["version"]) for r in results] == [("Accepted", 1)] * 3
            assert sorted(lists["CP-N"].list) == ["ALL", "N1", "NS"]
            assert sorted(lists["CP-S"].list) == ["ALL", "NS", "S1"]
            assert sorted(lists["CP-X"].list) == ["ALL"]  # no group: the all-chargers list
            shown = await client.request("local_list.show", {"charger_id": "CP-S"})
            assert [e["id_tag"] for e in shown["result"]["list"]] == ["ALL", "NS", "S1"]

            # CP-X joins north: only the difference, with its own next version.
            moved = await client.request(
                "chargers.set_group", {"charger_id": "CP-X", "group": "north"}
            )
            assert moved["ok"], moved
            (joined,) = await sync(client, "CP-X")
            assert (joined["update_type"], joined["version"]) == ("Differential", 2)
            diff = script_x.payloads("SendLocalList")[-1]["localAuthorizationList"]
            assert [e["idTag"] for e in diff] == ["N1", "NS"]
            assert sorted(lists["CP-X"].list) == ["ALL", "N1", "NS"]

            # N1 on every list again: south gets it added, north is up to date.
            changed = await client.request("tags.set", {"id_tag": "N1", "groups": []})
            assert changed["result"]["groups"] == []
            results = await sync(client, "CP-N", "CP-S")
            assert [r["result"] for r in results] == ["up-to-date", "Accepted"]
            assert sorted(lists["CP-S"].list) == ["ALL", "N1", "NS", "S1"]

            # Back to no group: the all-chargers list (NS and S1 removed).
            left = await client.request("chargers.set_group", {"charger_id": "CP-S", "group": None})
            assert left["result"]["list_group"] is None
            (back,) = await sync(client, "CP-S")
            assert back["update_type"] == "Differential"
            assert sorted(lists["CP-S"].list) == ["ALL", "N1"]
        assert server.run(local_lists.list_state, "CP-S")["version"] == 3
        assert server.run(local_lists.list_state, "CP-N")["version"] == 1

        bad = await client.request("chargers.set_group", {"charger_id": "CP-N", "group": "a b"})
        assert bad["error"]["code"] == "bad_arguments"
        bad_tag = await client.request("tags.add", {"id_tag": "Z9", "groups": ["ok", "no,comma"]})
        assert bad_tag["error"]["code"] == "bad_arguments"
        assert server.run(tags.get_tag, "Z9") is None
        unknown = await client.request("chargers.set_group", {"charger_id": "NOPE", "group": "x"})
        assert unknown["error"]["code"] == "not_found"


async def test_a_group_change_is_pushed_to_enabled_chargers(server: RunningServer) -> None:
    """Moving a charger into a group changes its list: pushed like a tag change."""
    server.run(tags.add_tag, "ALL")
    server.run(tags.add_tag, "N1", groups=("north",))
    cp = await online(server)
    charger = ListCharger()
    async with control(server) as client, scripted(cp, charger.handlers()):
        (first,) = await sync(client, "CP-1")
        assert sorted(charger.list) == ["ALL"]
        assert first["version"] == 1
        moved = await client.request("chargers.set_group", {"charger_id": "CP-1", "group": "north"})
        assert moved["ok"], moved
        with trio.fail_after(10):
            while charger.version < 2:  # noqa: ASYNC110 - the charger's state
                await trio.sleep(0.05)
    assert sorted(charger.list) == ["ALL", "N1"]


async def test_ctl_set_group_and_tag_groups(server: RunningServer) -> None:
    server.run(chargers.add_charger, "CP-1")
    grouped = await ctl(server, "--json", "chargers", "set-group", "CP-1", "depot")
    assert grouped.returncode == 0, grouped.stderr
    assert json.loads(grouped.stdout)["list_group"] == "depot"
    added = await ctl(server, "tags", "add", "T1", "--group", "depot", "--group", "yard")
    assert added.returncode == 0, added.stderr
    listed = await ctl(server, "tags", "list")
    assert b"GROUPS" in listed.stdout
    assert b"depot,yard" in listed.stdout
    reset = await ctl(server, "--json", "tags", "set", "T1", "--all-chargers")
    assert json.loads(reset.stdout)["groups"] == []
    cleared = await ctl(server, "--json", "chargers", "set-group", "CP-1")
    assert json.loads(cleared.stdout)["list_group"] is None
    bad = await ctl(server, "chargers", "set-group", "CP-1", "no/slash")
    assert bad.returncode != 0
    assert b"group" in bad.stderr
    assert server.run(chargers.get_charger, "CP-1").list_group is None


async def test_http_api_groups(api: tuple[RunningServer, str]) -> None:
    server, base = api
    server.run(chargers.add_charger, "CP-1")
    async with api_client(base, OPERATE) as http:
        put = await http.put("/charge_points/CP-1/list_group", json={"group": "north"})
        assert put.status_code == 200, put.text
        assert put.json()["list_group"] == "north"
        bad = await http.put("/charge_points/CP-1/list_group", json={"group": "a b"})
        assert bad.status_code == 422
        missing = await http.put("/charge_points/NOPE/list_group", json={"group": "x"})
        assert missing.status_code == 404
        created = await http.post("/id_tags", json={"id_tag": "T1", "groups": ["north"]})
        assert created.status_code == 201, created.text
        assert created.json()["groups"] == ["north"]
        patched = await http.patch("/id_tags/T1", json={"groups": []})
        assert patched.json()["groups"] == []
        shown = await http.get("/charge_points/CP-1")
        assert shown.json()["list_group"] == "north"
    body: Any = server.run(tags.get_tag, "T1")
    assert body.groups == ()
