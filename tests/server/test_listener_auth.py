"""Security profile 1 checks: Basic parsing, verification cache, per-source tarpit."""

from __future__ import annotations

import base64

import pytest
import trio
import trio.testing

from voltaro.domain.credentials import hash_password
from voltaro.net.auth import BasicCredentials, PasswordChecker, parse_basic_auth

STORED = hash_password(b"sixteen byte key")
GOOD = BasicCredentials(b"CP1", b"sixteen byte key")
BAD = BasicCredentials(b"CP1", b"wrong")


def header(raw: bytes) -> list[tuple[bytes, bytes]]:
    return [(b"Authorization", b"Basic " + base64.b64encode(raw))]


def test_parse_keeps_raw_password_bytes_and_colons() -> None:
    creds = parse_basic_auth(header(b"CP 1:\xff\x00:x"))
    assert creds == BasicCredentials(b"CP 1", b"\xff\x00:x")


@pytest.mark.parametrize(
    "headers",
    [
        [],
        [(b"Authorization", b"Bearer abc")],
        [(b"authorization", b"Basic ***")],
        header(b"nocolon"),
    ],
)
def test_parse_rejects_absent_or_malformed(headers: list[tuple[bytes, bytes]]) -> None:
    assert parse_basic_auth(headers) is None


async def test_success_is_cached_per_secret_and_hash() -> None:
    checker = PasswordChecker()
    assert await checker.check("CP1", STORED, GOOD, "10.0.0.1")
    assert await checker.check("CP1", STORED, GOOD, "10.0.0.2")
    assert checker.kdf_runs == 1
    # A different stored hash (password rotated) is verified again, and fails.
    assert not await checker.check("CP1", hash_password(b"rotated key 1234"), GOOD, "10.0.0.1")
    assert checker.kdf_runs == 2


async def test_wrong_username_fails_without_kdf() -> None:
    checker = PasswordChecker()
    assert not await checker.check("CP2", STORED, GOOD, "10.0.0.1")
    assert checker.kdf_runs == 0


@pytest.mark.trio
async def test_tarpit_per_source_never_locks_the_id(autojump_clock: trio.testing.MockClock) -> None:
    checker = PasswordChecker(verify=lambda secret, stored: secret == b"ok", tarpit_delay=2.0)
    attacker, owner = "203.0.113.9", "198.51.100.7"
    for _ in range(5):
        start = trio.current_time()
        assert not await checker.check("CP1", "h", BAD, attacker)
        assert trio.current_time() - start == 0
    start = trio.current_time()
    assert not await checker.check("CP1", "h", BAD, attacker)
    assert trio.current_time() - start >= 2.0
    # The charger itself, from its own address, is neither delayed nor locked out.
    start = trio.current_time()
    assert await checker.check("CP1", "h", BasicCredentials(b"CP1", b"ok"), owner)
    assert trio.current_time() - start == 0
    # The window expires.
    await trio.sleep(61)
    start = trio.current_time()
    assert not await checker.check("CP1", "h", BAD, attacker)
    assert trio.current_time() - start == 0
