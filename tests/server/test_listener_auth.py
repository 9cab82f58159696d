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
async def test_failures_are_limited_per_identity_and_source_never_per_identity(
    autojump_clock: trio.testing.MockClock,
) -> None:
    checker = PasswordChecker(verify=lambda secret, stored: secret == b"ok")
    attacker, owner = "203.0.113.9", "198.51.100.7"
    for _ in range(5):
        assert checker.retry_after("CP1", attacker) == 0
        assert not await checker.check("CP1", "h", BAD, attacker)
    runs = checker.kdf_runs
    # The sixth attempt is refused before the KDF, with the time to wait.
    assert checker.retry_after("CP1", attacker) > 0
    assert checker.kdf_runs == runs
    # The charger itself, from its own address, is neither delayed nor locked out.
    assert checker.retry_after("CP1", owner) == 0
    assert await checker.check("CP1", "h", BasicCredentials(b"CP1", b"ok"), owner)
    # The bucket refills (5 a minute): one attempt is allowed again after 12 s.
    await trio.sleep(13)
    assert checker.retry_after("CP1", attacker) == 0


@pytest.mark.trio
async def test_one_source_trying_many_identities_is_limited(
    autojump_clock: trio.testing.MockClock,
) -> None:
    checker = PasswordChecker(verify=lambda secret, stored: False)
    source = "203.0.113.9"
    for i in range(20):
        charger_id = f"CP{i}"
        assert checker.retry_after(charger_id, source) == 0
        await checker.check(charger_id, "h", BasicCredentials(charger_id.encode(), b"x"), source)
    assert checker.retry_after("CP99", source) > 0
    assert checker.retry_after("CP99", "192.0.2.1") == 0


@pytest.mark.trio
async def test_security_log_is_one_line_per_source_per_minute(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    checker = PasswordChecker(verify=lambda secret, stored: False, failures_per_source=1000)
    for i in range(200):
        await checker.check(f"CP{i}", "h", BAD, "203.0.113.9")
    lines = [r for r in caplog.records if "security:" in r.getMessage()]
    assert len(lines) == 1
    await trio.sleep(61)
    await checker.check("CP0", "h", BAD, "203.0.113.9")
    lines = [r.getMessage() for r in caplog.records if "security:" in r.getMessage()]
    assert len(lines) == 3
    assert "199 more failed authentications" in lines[1]
