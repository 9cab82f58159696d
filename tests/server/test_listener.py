"""The OCPP listener over real loopback sockets with an independent WebSocket client."""

from __future__ import annotations

import logging

import pytest
import trio
from listener_support import (
    EchoConnection,
    basic,
    close_code,
    open_charger,
    roundtrip,
    serving,
    wait_for,
)

from voltaro.domain.credentials import hash_password
from voltaro.domain.model import RegistrationStatus
from voltaro.net.directory import ChargerRecord, MemoryDirectory
from voltaro.settings import Settings, UnknownChargers, replace

BASE = Settings(host="127.0.0.1", port=0, ping_interval=0, handshake_timeout=5)


def known(*ids: str, **fields: object) -> MemoryDirectory:
    return MemoryDirectory(ChargerRecord(i, **fields) for i in ids)  # type: ignore[arg-type]


# --- subprotocol (OCPP-J 1.6 §3.1.2, R4-R6) --------------------------------------------


async def test_ocpp16_is_selected_among_offered_protocols() -> None:
    async with (
        serving(BASE, known("CP1")) as srv,
        await open_charger(srv.url("/ocpp/CP1"), subprotocols=["ocpp0.1", "ocpp1.6"]) as hs,
    ):
        assert hs.status == 101
        assert hs.client is not None
        assert hs.client.subprotocol == "ocpp1.6"
        assert await roundtrip(hs.client, "hello") == "hello"
        assert srv.registry.is_connected("CP1")


async def test_only_other_protocols_are_refused_before_upgrade() -> None:
    async with serving(BASE, known("CP1")) as srv:
        async with await open_charger(srv.url("/ocpp/CP1"), subprotocols=["ocpp2.0.1"]) as hs:
            assert hs.status == 400
        assert not srv.registry.is_connected("CP1")


async def test_no_subprotocol_is_refused_by_default() -> None:
    async with (
        serving(BASE, known("CP1")) as srv,
        await open_charger(srv.url("/ocpp/CP1"), subprotocols=None) as hs,
    ):
        assert hs.status == 400


async def test_no_subprotocol_allowed_for_one_charger_only() -> None:
    directory = known("LAX", allow_no_subprotocol=True)
    directory.records["STRICT"] = ChargerRecord("STRICT")
    async with serving(BASE, directory) as srv:
        async with await open_charger(srv.url("/ocpp/LAX"), subprotocols=None) as hs:
            assert hs.status == 101
            assert hs.client is not None
            assert hs.client.subprotocol is None
            assert await roundtrip(hs.client, "x") == "x"
        async with await open_charger(srv.url("/ocpp/STRICT"), subprotocols=None) as hs:
            assert hs.status == 400


async def test_no_subprotocol_allowed_by_setting() -> None:
    settings = replace(BASE, allow_missing_subprotocol=True)
    async with (
        serving(settings, known("CP1")) as srv,
        await open_charger(srv.url("/ocpp/CP1"), subprotocols=None) as hs,
    ):
        assert hs.status == 101


# --- identity (OCPP-J 1.6 §3.1.1, R2) ----------------------------------------------------


async def test_identity_is_percent_decoded_last_segment_without_query() -> None:
    async with serving(BASE, known("CP 1")) as srv:
        url = srv.url("/some/prefix/ocpp/CP%201?token=abc")
        async with await open_charger(url) as hs:
            assert hs.status == 101
            assert srv.registry.connected() == ["CP 1"]


async def test_bad_identities_are_refused_at_handshake() -> None:
    settings = replace(BASE, unknown_chargers=UnknownChargers.ACCEPT)
    async with serving(settings, MemoryDirectory()) as srv:
        for path in ("/ocpp/", "/ocpp/" + "A" * 49, "/ocpp/CP%07X", "/ocpp/%FF%FE"):
            async with await open_charger(srv.url(path)) as hs:
                assert hs.status == 400, path
        async with await open_charger(srv.url("/ocpp/" + "B" * 48)) as hs:
            assert hs.status == 101
            await wait_for(lambda: srv.registry.connected() == ["B" * 48])


# --- unknown charge points (R3, settings.unknown_chargers) ------------------------------


async def test_unknown_rejected_with_404_by_default() -> None:
    directory = MemoryDirectory()
    async with serving(BASE, directory) as srv, await open_charger(srv.url("/ocpp/NOBODY")) as hs:
        assert hs.status == 404
    assert directory.records == {}


async def test_unknown_registered_pending_or_accepted_by_policy() -> None:
    for policy, expected in (
        (UnknownChargers.PENDING, RegistrationStatus.PENDING),
        (UnknownChargers.ACCEPT, RegistrationStatus.ACCEPTED),
    ):
        directory = MemoryDirectory()
        async with (
            serving(replace(BASE, unknown_chargers=policy), directory) as srv,
            await open_charger(srv.url("/ocpp/NEW-1")) as hs,
        ):
            assert hs.status == 101
            await wait_for(lambda d=directory: "NEW-1" in d.online)
        assert directory.records["NEW-1"].registration is expected


async def test_unknown_with_bad_subprotocol_is_not_registered() -> None:
    directory = MemoryDirectory()
    async with (
        serving(replace(BASE, unknown_chargers=UnknownChargers.PENDING), directory) as srv,
        await open_charger(srv.url("/ocpp/NEW-2"), subprotocols=None) as hs,
    ):
        assert hs.status == 400
    assert directory.records == {}


# --- security profile 1 (R29, R30) ----------------------------------------------------------

BINARY = bytes(range(0xE0, 0xF4))  # 20 bytes, not UTF-8


def secured(password: bytes) -> MemoryDirectory:
    return known("SEC-1", password_hash=hash_password(password))


async def test_basic_auth_accepted_and_cached() -> None:
    async with serving(BASE, secured(b"correct horse battery")) as srv:
        for _ in range(3):
            async with await open_charger(
                srv.url("/ocpp/SEC-1"), headers=basic(b"SEC-1", b"correct horse battery")
            ) as hs:
                assert hs.status == 101
        # A reconnect storm costs one KDF run, not one per connection.
        assert srv.listener.passwords.kdf_runs == 1


async def test_basic_auth_binary_password() -> None:
    async with serving(BASE, secured(BINARY)) as srv:
        async with await open_charger(
            srv.url("/ocpp/SEC-1"), headers=basic(b"SEC-1", BINARY)
        ) as hs:
            assert hs.status == 101
        async with await open_charger(
            srv.url("/ocpp/SEC-1"), headers=basic(b"SEC-1", BINARY[:-1] + b"\x00")
        ) as hs:
            assert hs.status == 401


async def test_basic_auth_refused_missing_or_wrong_user() -> None:
    async with serving(BASE, secured(b"correct horse battery")) as srv:
        url = srv.url("/ocpp/SEC-1")
        cases = {
            "missing": None,
            "wrong password": basic(b"SEC-1", b"wrong horse battery"),
            "wrong user": basic(b"SEC-2", b"correct horse battery"),
            "not basic": {"Authorization": "Bearer correct horse battery"},
            "garbage": {"Authorization": "Basic !!!notbase64"},
        }
        for name, headers in cases.items():
            async with await open_charger(url, headers=headers) as hs:
                assert hs.status == 401, name
        assert not srv.registry.is_connected("SEC-1")


async def test_unauthenticated_second_socket_leaves_first_untouched() -> None:
    async with serving(BASE, secured(b"correct horse battery")) as srv:
        url = srv.url("/ocpp/SEC-1")
        async with await open_charger(
            url, headers=basic(b"SEC-1", b"correct horse battery")
        ) as first:
            assert first.client is not None
            async with await open_charger(url, headers=basic(b"SEC-1", b"guess")) as intruder:
                assert intruder.status == 401
            assert await roundtrip(first.client, "still here") == "still here"


# --- limits ------------------------------------------------------------------------------


async def test_oversize_frame_closes_with_1009() -> None:
    settings = replace(BASE, max_message_size=2048)
    async with (
        serving(settings, known("CP1", "CP2")) as srv,
        await open_charger(srv.url("/ocpp/CP1")) as big,
        await open_charger(srv.url("/ocpp/CP2")) as other,
    ):
        assert big.client is not None
        assert other.client is not None
        await trio.to_thread.run_sync(big.client.send, "x" * 2049)
        assert await close_code(big.client) == 1009
        assert await roundtrip(other.client, "fine") == "fine"


async def test_connection_cap_answers_503() -> None:
    settings = replace(BASE, max_connections=2)
    async with serving(settings, known("A", "B", "C")) as srv:
        async with (
            await open_charger(srv.url("/ocpp/A")) as a,
            await open_charger(srv.url("/ocpp/B")) as b,
        ):
            assert (a.status, b.status) == (101, 101)
            async with await open_charger(srv.url("/ocpp/C")) as c:
                assert c.status == 503
        await wait_for(lambda: srv.listener.open_connections == 0)
        async with await open_charger(srv.url("/ocpp/C")) as c:
            assert c.status == 101


# --- takeover (R11) and isolation ----------------------------------------------------------


async def test_second_connection_takes_over_within_a_second() -> None:
    async with serving(BASE, known("CP1")) as srv:
        async with await open_charger(srv.url("/ocpp/CP1")) as old:
            assert old.client is not None
            first_link = srv.registry.get("CP1")
            async with await open_charger(srv.url("/ocpp/CP1")) as new:
                assert new.client is not None
                started = trio.current_time()
                code = await close_code(old.client, timeout=10)
                took = trio.current_time() - started
                # Closed in ~0.01 s; without the takeover it is never closed (no pings).
                assert took < 5.0, took
                assert code == 1000
                # The old session's cleanup did not unregister its successor.
                await wait_for(lambda: srv.listener._live_sessions == 1)
                assert srv.registry.is_connected("CP1")
                assert srv.registry.get("CP1") is not first_link
                assert await roundtrip(new.client, "new") == "new"
                assert srv.directory.online == {"CP1"}
                assert srv.registry.statistics().takeovers == 1
        await wait_for(lambda: not srv.registry.is_connected("CP1"))
        assert srv.directory.online == set()


async def test_crash_in_one_connection_closes_it_with_1011_only() -> None:
    async with (
        serving(BASE, known("BAD", "GOOD")) as srv,
        await open_charger(srv.url("/ocpp/GOOD")) as good,
        await open_charger(srv.url("/ocpp/BAD")) as bad,
    ):
        assert good.client is not None
        assert bad.client is not None
        await trio.to_thread.run_sync(bad.client.send, "crash")
        assert await close_code(bad.client) == 1011
        assert await roundtrip(good.client, "alive") == "alive"
        assert srv.listener.crashed == 1
        await wait_for(lambda: srv.registry.connected() == ["GOOD"])
        # The listener still takes new chargers.
        async with await open_charger(srv.url("/ocpp/BAD")) as again:
            assert again.status == 101


async def test_faulty_connection_factory_does_not_stop_the_listener() -> None:
    def factory(charger_id: str, *args: object, **kwargs: object) -> EchoConnection:
        if charger_id == "BROKEN":
            raise RuntimeError("factory bug")
        return EchoConnection(charger_id, *args, **kwargs)  # type: ignore[arg-type]

    async with serving(BASE, known("BROKEN", "OK"), connection_factory=factory) as srv:
        async with await open_charger(srv.url("/ocpp/BROKEN")) as broken:
            assert broken.client is not None
            assert await close_code(broken.client) in (1000, 1011, None)
        async with await open_charger(srv.url("/ocpp/OK")) as ok:
            assert ok.client is not None
            assert await roundtrip(ok.client, "x") == "x"


async def test_shutdown_closes_sessions_with_1001() -> None:
    async with (
        serving(BASE, known("A", "B")) as srv,
        await open_charger(srv.url("/ocpp/A")) as a,
        await open_charger(srv.url("/ocpp/B")) as b,
    ):
        assert a.client is not None
        assert b.client is not None
        async with trio.open_nursery() as nursery:
            nursery.start_soon(lambda: srv.listener.shutdown(grace=3))
            assert await close_code(a.client) == 1001
            assert await close_code(b.client) == 1001
        assert len(srv.registry) == 0
        async with await open_charger(srv.url("/ocpp/A")) as late:
            assert late.status == 503


# --- the connect's log line (issue 14 step 4: one INFO line per connect) ---------------


class _AdmitFails(MemoryDirectory):
    """Registers, then cannot record the connection (the database went away)."""

    async def admit(self, charger_id: str) -> None:
        from voltaro.domain.ports import StorageUnavailable

        raise StorageUnavailable("database down")


def _info(caplog: pytest.LogCaptureFixture, charger_id: str) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno >= logging.INFO and repr(charger_id) in r.getMessage()
    ]


async def test_a_first_contact_is_one_info_line_naming_its_registration(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="voltaro")
    directory = MemoryDirectory()
    settings = replace(BASE, unknown_chargers=UnknownChargers.PENDING)
    async with serving(settings, directory) as srv:
        async with await open_charger(srv.url("/ocpp/NEW-LOG")) as hs:
            assert hs.status == 101
            await wait_for(lambda: "NEW-LOG" in directory.online)
        await wait_for(lambda: "NEW-LOG" not in directory.online)
        (first,) = [m for m in _info(caplog, "NEW-LOG") if "connected from" in m]
        assert first.endswith("(first contact: registered as Pending)"), first
        assert not [m for m in _info(caplog, "NEW-LOG") if "registered unknown" in m]
        caplog.clear()
        # Known now: its next connect says nothing of a registration.
        async with await open_charger(srv.url("/ocpp/NEW-LOG")) as hs:
            assert hs.status == 101
            await wait_for(lambda: "NEW-LOG" in directory.online)
        (again,) = [m for m in _info(caplog, "NEW-LOG") if "connected from" in m]
        assert "first contact" not in again, again
        assert "regist" not in again, again


async def test_a_first_contact_refused_after_its_registration_says_so(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="voltaro")
    directory = _AdmitFails()
    settings = replace(BASE, unknown_chargers=UnknownChargers.ACCEPT)
    async with (
        serving(settings, directory) as srv,
        await open_charger(srv.url("/ocpp/NEW-503")) as hs,
    ):
        assert hs.status == 503
    assert directory.records["NEW-503"].registration is RegistrationStatus.ACCEPTED
    (line,) = [m for m in _info(caplog, "NEW-503") if "registered" in m]
    assert line.endswith("as Accepted (its connection did not open)"), line
