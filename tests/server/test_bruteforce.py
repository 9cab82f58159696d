"""Issue 11.9: guessing a charger's password is limited before the KDF, per source."""

from __future__ import annotations

from listener_support import basic, open_charger, serving

from voltaro.domain.credentials import hash_password
from voltaro.net.directory import ChargerRecord, MemoryDirectory
from voltaro.settings import Settings

BASE = Settings(host="127.0.0.1", port=0, ping_interval=0, handshake_timeout=5)


async def test_guessing_is_refused_with_429_before_the_kdf() -> None:
    directory = MemoryDirectory(
        [ChargerRecord("SEC-1", password_hash=hash_password(b"correct horse battery"))]
    )
    async with serving(BASE, directory) as srv:
        url = srv.url("/ocpp/SEC-1")
        for i in range(5):
            async with await open_charger(url, headers=basic(b"SEC-1", b"guess %d" % i)) as hs:
                assert hs.status == 401
        runs = srv.listener.passwords.kdf_runs
        for i in range(20):
            async with await open_charger(url, headers=basic(b"SEC-1", b"more %d" % i)) as hs:
                assert hs.status == 429
        # Refused attempts cost no KDF run (and so no CPU and no wait in its queue).
        assert srv.listener.passwords.kdf_runs == runs
        assert not srv.registry.is_connected("SEC-1")


async def test_parallel_guesses_cannot_all_slip_past_the_limit() -> None:
    import trio

    directory = MemoryDirectory(
        [ChargerRecord("SEC-1", password_hash=hash_password(b"correct horse battery"))]
    )
    statuses: list[int] = []
    async with serving(BASE, directory) as srv:
        url = srv.url("/ocpp/SEC-1")

        async def attempt(i: int) -> None:
            async with await open_charger(url, headers=basic(b"SEC-1", b"p%d" % i)) as hs:
                statuses.append(hs.status)

        async with trio.open_nursery() as nursery:
            for i in range(15):
                nursery.start_soon(attempt, i)
        assert statuses.count(401) == 5
        assert statuses.count(429) == 10
        assert srv.listener.passwords.kdf_runs == 5
