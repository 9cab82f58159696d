"""Local lists kept in sync without an operator (issue 16): a charger with
LocalAuthListEnabled true that connects or boots is asked GetLocalListVersion and sent
what it lacks; a tag's expiry is pushed when it passes. Against an independent
raw-frame charger that keeps a list with versions (tests/e2e/test_local_list.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
import trio

from tests.e2e.conftest import RunningServer, serving
from tests.e2e.test_local_list import ListCharger, control
from tests.support.charger import RawCharger
from tests.support.scripted import HANG_UP, Script, scripted
from voltaro.domain.model import RegistrationStatus
from voltaro.domain.timestamps import format_utc, utc_now
from voltaro.store import chargers, local_lists, tags
from voltaro.store import commands as audit

DELAY = 0.3  # local_list_sync_delay in these tests


@pytest.fixture
async def server(database_url: str, tmp_path: Path) -> AsyncIterator[RunningServer]:
    async with serving(
        database_url, tmp_path, local_list_sync_on_connect=True, local_list_sync_delay=DELAY
    ) as running:
        yield running


async def arrive(
    server: RunningServer, charger_id: str = "CP-1", *, boot: bool = True
) -> RawCharger:
    cp = await RawCharger.connect(f"{server.url}/{charger_id}")
    if boot:
        answer = await cp.boot()
        assert answer["status"] == "Accepted"
    return cp


async def until(script: Script, action: str, count: int = 1, *, within: float = 10) -> None:
    with trio.fail_after(within):
        while len(script.payloads(action)) < count:  # noqa: ASYNC110 - the charger's view
            await trio.sleep(0.02)


async def settled(
    server: RunningServer, charger_id: str, result: str, *, within: float = 10
) -> None:
    """The sync's outcome is stored (after the charger's last answer)."""
    with trio.fail_after(within):
        while (server.run(local_lists.list_state, charger_id) or {}).get(  # noqa: ASYNC110
            "result"
        ) != result:
            await trio.sleep(0.02)


async def gone(server: RunningServer, charger_id: str) -> None:
    """The server saw the charger's connection close."""
    with trio.fail_after(5):
        while server.run(chargers.get_charger, charger_id).connected:  # noqa: ASYNC110
            await trio.sleep(0.02)


def system_commands(server: RunningServer, charger_id: str) -> list[str]:
    return [
        c["action"]
        for c in reversed(server.run(audit.list_commands, charger_id))
        if c["actor"] == "system:local-list"
    ]


async def known_disabled(server: RunningServer) -> ListCharger:
    """CP-1 (tag A1 known) came once, reported LocalAuthListEnabled false to its sync's
    GetConfiguration and left: the server knows it as a charger with its list disabled."""
    server.run(chargers.add_charger, "CP-1")
    server.run(tags.add_tag, "A1")
    disabled = ListCharger(enabled="false")
    cp = await arrive(server)
    async with scripted(cp, disabled.handlers()) as script:
        await until(script, "GetConfiguration")
    assert system_commands(server, "CP-1") == ["GetConfiguration"]
    await cp.close()
    await gone(server, "CP-1")
    return disabled


async def test_boot_then_reconnect_gets_full_then_only_the_difference(
    server: RunningServer,
) -> None:
    server.run(chargers.add_charger, "CP-1")
    server.run(tags.add_tag, "A1")
    server.run(tags.add_tag, "B2")
    charger = ListCharger()
    cp = await arrive(server)
    async with scripted(cp, charger.handlers()) as script:
        await until(script, "SendLocalList")
        await settled(server, "CP-1", "Accepted")
    assert script.actions() == ["GetConfiguration", "GetLocalListVersion", "SendLocalList"]
    assert script.payloads("SendLocalList")[0]["updateType"] == "Full"
    assert (charger.version, sorted(charger.list)) == (1, ["A1", "B2"])
    await cp.close()

    # Offline, the tag table changes; the charger reconnects without booting (a network
    # drop): the connection alone starts the sync, and only the change is sent.
    await gone(server, "CP-1")
    server.run(tags.block_tag, "B2")
    cp = await arrive(server, boot=False)
    async with scripted(cp, charger.handlers()) as script:
        await until(script, "SendLocalList")
        await settled(server, "CP-1", "Accepted")
    (diff,) = script.payloads("SendLocalList")
    assert (diff["updateType"], diff["listVersion"]) == ("Differential", 2)
    assert diff["localAuthorizationList"] == [{"idTag": "B2", "idTagInfo": {"status": "Blocked"}}]
    assert charger.list["B2"] == {"status": "Blocked"}

    # Up to date: a third arrival asks the version and sends nothing.
    await cp.close()
    await gone(server, "CP-1")
    cp = await arrive(server)
    async with scripted(cp, charger.handlers()) as script:
        await until(script, "GetLocalListVersion")
        await settled(server, "CP-1", "up-to-date")
        await trio.sleep(DELAY)
    assert "SendLocalList" not in script.actions()
    assert system_commands(server, "CP-1").count("SendLocalList") == 2


async def test_connect_and_boot_give_one_sync_and_disabled_chargers_get_none(
    server: RunningServer,
) -> None:
    server.run(chargers.add_charger, "CP-1")
    server.run(chargers.add_charger, "CP-2")
    server.run(tags.add_tag, "A1")
    enabled, disabled = ListCharger(), ListCharger(enabled="false")
    cp, other = await arrive(server), await arrive(server, "CP-2")
    async with scripted(cp, enabled.handlers()) as one, scripted(other, disabled.handlers()) as two:
        await until(one, "SendLocalList")
        await until(two, "GetConfiguration")
        await settled(server, "CP-1", "Accepted")
        await trio.sleep(3 * DELAY)  # a second sync (connect, then boot) would show now
    assert one.actions() == ["GetConfiguration", "GetLocalListVersion", "SendLocalList"]
    # LocalAuthListEnabled false: the configuration is read, nothing else is asked.
    assert two.actions() == ["GetConfiguration"]
    assert server.run(local_lists.list_state, "CP-2") is None


async def test_pending_charger_is_not_synced(server: RunningServer) -> None:
    server.run(chargers.add_charger, "CP-1", registration=RegistrationStatus.PENDING)
    cp = await RawCharger.connect(f"{server.url}/CP-1")
    assert (await cp.boot())["status"] == "Pending"
    # The server may not send a Pending charger anything but what it needs to accept
    # it (OCPP 1.6 §4.2.1): no list while Pending.
    await cp.expect_silence(4 * DELAY)
    assert system_commands(server, "CP-1") == []


@pytest.mark.parametrize("answer", ["Failed", "NotSupported"])
async def test_refused_update_on_connect_is_recorded_and_retried_on_the_next(
    server: RunningServer, answer: str
) -> None:
    """TC_043_1 / TC_043_3 answers to an automatic sync: stored as the list's state; the
    next arrival tries again (Full after Failed: what the charger holds is unknown)."""
    server.run(chargers.add_charger, "CP-1")
    server.run(tags.add_tag, "A1")
    charger = ListCharger()
    charger.answers = [answer]
    cp = await arrive(server)
    async with scripted(cp, charger.handlers()):
        await settled(server, "CP-1", answer)
    state = server.run(local_lists.list_state, "CP-1")
    assert state["version"] is None
    assert answer in state["error"]
    await cp.close()
    await gone(server, "CP-1")
    cp = await arrive(server)
    async with scripted(cp, charger.handlers()) as script:
        await settled(server, "CP-1", "Accepted")
    assert [p["updateType"] for p in script.payloads("SendLocalList")] == ["Full"]
    assert (charger.version, sorted(charger.list)) == (1, ["A1"])


async def test_version_mismatch_on_connect_falls_back_to_full(server: RunningServer) -> None:
    """TC_043 VersionMismatch to the Differential update of an automatic sync."""
    server.run(chargers.add_charger, "CP-1")
    server.run(tags.add_tag, "A1")
    charger = ListCharger()
    cp = await arrive(server)
    async with scripted(cp, charger.handlers()):
        await settled(server, "CP-1", "Accepted")
    await cp.close()
    await gone(server, "CP-1")
    server.run(tags.add_tag, "B2")
    charger.answers = ["VersionMismatch"]
    cp = await arrive(server)
    async with scripted(cp, charger.handlers()) as script:
        await until(script, "SendLocalList", 2)
        await settled(server, "CP-1", "Accepted")
    assert [p["updateType"] for p in script.payloads("SendLocalList")] == ["Differential", "Full"]
    assert sorted(charger.list) == ["A1", "B2"]


async def test_charger_vanishing_mid_sync_gets_a_full_list_when_back(
    server: RunningServer,
) -> None:
    server.run(chargers.add_charger, "CP-1")
    server.run(tags.add_tag, "A1")
    charger = ListCharger()
    charger.answers = [HANG_UP]
    cp = await arrive(server)
    async with scripted(cp, charger.handlers()) as script:
        await until(script, "SendLocalList")
        await settled(server, "CP-1", "error")
    assert charger.version == 0  # it never applied the update
    state = server.run(local_lists.list_state, "CP-1")
    assert state["version"] is None
    assert "disconnected" in state["error"]
    cp = await arrive(server)
    async with scripted(cp, charger.handlers()) as script:
        await settled(server, "CP-1", "Accepted")
    assert [p["updateType"] for p in script.payloads("SendLocalList")] == ["Full"]
    assert (charger.version, sorted(charger.list)) == (1, ["A1"])


async def test_expiry_is_pushed_when_it_passes(server: RunningServer) -> None:
    """A tag's expiry date passing changes its list entry to Expired: pushed unasked."""
    server.run(chargers.add_charger, "CP-1")
    server.run(tags.add_tag, "A1")
    charger = ListCharger()
    cp = await arrive(server)
    async with scripted(cp, charger.handlers()) as script, control(server) as client:
        await settled(server, "CP-1", "Accepted")
        expiry = format_utc(utc_now() + timedelta(seconds=1.5))
        response = await client.request("tags.add", {"id_tag": "SOON", "expiry": expiry})
        assert response["ok"], response
        # The tag's addition is pushed at once (a tag change), its expiry when it passes.
        await until(script, "SendLocalList", 3, within=15)
    _, added, expired = script.payloads("SendLocalList")
    assert added["localAuthorizationList"] == [
        {"idTag": "SOON", "idTagInfo": {"status": "Accepted", "expiryDate": expiry}}
    ]
    assert expired["localAuthorizationList"] == [
        {"idTag": "SOON", "idTagInfo": {"status": "Expired", "expiryDate": expiry}}
    ]
    assert (charger.version, charger.list["SOON"]["status"]) == (3, "Expired")


async def test_a_known_disabled_charger_reconnecting_is_not_asked_again(
    server: RunningServer,
) -> None:
    """A reconnect storm must not cost every charger a GetConfiguration (issue 14): a
    charger that last reported LocalAuthListEnabled false gets nothing when it reconnects,
    nor when it boots again with the same vendor, model and firmware (a power cut: its
    configuration is what it last reported, OCPP 1.6 §9; a ChangeConfiguration answered
    RebootRequired is stored as the new value already). A boot with other firmware may
    have changed its configuration: it is asked again."""
    disabled = await known_disabled(server)

    for boot in (False, True):  # a network drop, then a power cut
        cp = await arrive(server, boot=boot)
        async with scripted(cp, disabled.handlers()) as script:
            await trio.sleep(4 * DELAY)  # past the due time of a sync on connect
        assert script.actions() == []
        assert system_commands(server, "CP-1") == ["GetConfiguration"]
        await cp.close()
        await gone(server, "CP-1")

    cp = await RawCharger.connect(f"{server.url}/CP-1")
    answer = await cp.boot(firmwareVersion="2.0")  # new firmware
    assert answer["status"] == "Accepted"
    async with scripted(cp, disabled.handlers()) as script:
        await until(script, "GetConfiguration")
    assert system_commands(server, "CP-1") == ["GetConfiguration", "GetConfiguration"]


async def test_a_charger_without_local_list_support_is_asked_once(
    server: RunningServer,
) -> None:
    """A charger that answered LocalAuthListEnabled as an unknown key has no Local Auth
    List Management profile (the key is required with it, OCPP 1.6 §9.3): reconnecting
    and booting again it is not asked again (issue 14: one command, answer and audit row
    less per charger of a reconnect storm)."""
    server.run(chargers.add_charger, "CP-1")
    server.run(tags.add_tag, "A1")
    without = ListCharger()
    without.config = {}  # every key unknown
    cp = await arrive(server)
    async with scripted(cp, without.handlers()) as script:
        await until(script, "GetConfiguration")
        await trio.sleep(2 * DELAY)
    assert script.actions() == ["GetConfiguration"]
    await cp.close()
    await gone(server, "CP-1")

    cp = await arrive(server)  # connects and boots, same firmware
    async with scripted(cp, without.handlers()) as script:
        await trio.sleep(4 * DELAY)
    assert script.actions() == []
    assert system_commands(server, "CP-1") == ["GetConfiguration"]

    # It gains the profile (an operator enables it at the charger) and is synced when
    # asked explicitly; from then on its connects are synced again.
    without.config = ListCharger().config
    await cp.close()
    await gone(server, "CP-1")
    cp = await arrive(server)
    async with scripted(cp, without.handlers()) as script, control(server) as client:
        response = await client.request("local_list.sync", {"charger_ids": ["CP-1"]})
        assert response["ok"], response
        await settled(server, "CP-1", "Accepted")
    assert (without.version, sorted(without.list)) == (1, ["A1"])


async def test_new_firmware_is_asked_even_if_the_charger_left_before_its_sync(
    server: RunningServer,
) -> None:
    """A charger known to have no list boots with new firmware and drops off before its
    sync on connect is due (a flaky modem after a firmware update). When it comes back
    and boots again (the same new firmware now), what it reported under the old firmware
    still does not hold: it is asked again, not skipped as "known disabled"."""
    disabled = await known_disabled(server)

    cp = await RawCharger.connect(f"{server.url}/CP-1")
    assert (await cp.boot(firmwareVersion="2.0"))["status"] == "Accepted"
    await cp.close()  # gone before its sync is due
    await gone(server, "CP-1")
    await trio.sleep(4 * DELAY)  # past the due time: the sync found it offline

    cp = await RawCharger.connect(f"{server.url}/CP-1")
    assert (await cp.boot(firmwareVersion="2.0"))["status"] == "Accepted"
    async with scripted(cp, disabled.handlers()) as script:
        await until(script, "GetConfiguration")
    assert system_commands(server, "CP-1") == ["GetConfiguration", "GetConfiguration"]
