"""Security profile 1 at the handshake: HTTP Basic auth checked before the upgrade.

OCPP 1.6 security whitepaper A00.FR.202-205 (R29/R30): the charger sends
``Authorization: Basic base64(<id>:<password>)`` on every upgrade; the username must be
the charge point id of the URL; the password is 16-20 raw bytes that need not be UTF-8.
The KDF (scrypt, ~40 ms) runs in a worker thread. A reconnect storm of chargers with
good credentials must not cost one KDF per connection, so successful verifications are
cached under an HMAC of the presented secret with a per-process key (the secret itself
is never kept). Failures are tarpitted per (id, source address) — never per id alone,
which would let anyone lock a charger out (scale-and-security RT6).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import os
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import trio

from voltaro.domain.credentials import verify_password

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class BasicCredentials:
    username: bytes
    password: bytes


def parse_basic_auth(headers: list[tuple[bytes, bytes]]) -> BasicCredentials | None:
    """The Basic credentials of a request, or None when absent or malformed.

    The username is everything up to the first colon (RFC 7617); the password keeps its
    raw bytes, colons included.
    """
    for name, value in headers:
        if name.lower() != b"authorization":
            continue
        scheme, _, encoded = value.strip().partition(b" ")
        if scheme.lower() != b"basic":
            return None
        try:
            decoded = base64.b64decode(encoded.strip(), validate=True)
        except (binascii.Error, ValueError):
            return None
        username, sep, password = decoded.partition(b":")
        if not sep:
            return None
        return BasicCredentials(username=username, password=password)
    return None


@dataclass(slots=True)
class _Failures:
    count: int
    window_start: float


class PasswordChecker:
    """Verifies Basic credentials against a stored hash: cached, thread-offloaded, tarpitted."""

    def __init__(
        self,
        *,
        verify: Callable[[bytes, str], bool] = verify_password,
        cache_size: int = 8192,
        kdf_threads: int = 4,
        free_failures: int = 5,
        failure_window: float = 60.0,
        tarpit_delay: float = 2.0,
        max_tracked_sources: int = 10000,
    ) -> None:
        self._verify = verify
        self._key = os.urandom(32)
        self._cache: OrderedDict[tuple[str, str, bytes], None] = OrderedDict()
        self._cache_size = cache_size
        # scrypt with n=2**14 takes 16 MiB per call: bound how many run at once.
        self._kdf_limiter = trio.CapacityLimiter(kdf_threads)
        self._free_failures = free_failures
        self._failure_window = failure_window
        self._tarpit_delay = tarpit_delay
        self._failures: OrderedDict[tuple[str, str], _Failures] = OrderedDict()
        self._max_tracked = max_tracked_sources
        self.kdf_runs = 0
        self.failed = 0

    def _cache_key(
        self, charger_id: str, stored_hash: str, secret: bytes
    ) -> tuple[str, str, bytes]:
        tag = hmac.new(self._key, secret, hashlib.sha256).digest()
        return (charger_id, stored_hash, tag)

    async def check(
        self,
        charger_id: str,
        stored_hash: str,
        credentials: BasicCredentials | None,
        source: str,
    ) -> bool:
        """True when the credentials match; a refused attempt may be delayed first."""
        ok = await self._matches(charger_id, stored_hash, credentials)
        if ok:
            return True
        self.failed += 1
        delay = self._record_failure(charger_id, source)
        log.warning(
            "security: failed authentication for charge point %r from %s", charger_id, source
        )
        if delay > 0:
            await trio.sleep(delay)
        return False

    async def _matches(
        self, charger_id: str, stored_hash: str, credentials: BasicCredentials | None
    ) -> bool:
        if credentials is None:
            return False
        # The username must be the id of the URL (A00.FR.203); compare bytes so that a
        # non-UTF-8 username simply fails.
        if not hmac.compare_digest(credentials.username, charger_id.encode()):
            return False
        key = self._cache_key(charger_id, stored_hash, credentials.password)
        if key in self._cache:
            self._cache.move_to_end(key)
            return True
        self.kdf_runs += 1
        ok = await trio.to_thread.run_sync(
            self._verify, credentials.password, stored_hash, limiter=self._kdf_limiter
        )
        if ok:
            self._cache[key] = None
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return ok

    def _record_failure(self, charger_id: str, source: str) -> float:
        now = trio.current_time()
        key = (charger_id, source)
        entry = self._failures.get(key)
        if entry is None or now - entry.window_start > self._failure_window:
            entry = _Failures(count=0, window_start=now)
        entry.count += 1
        self._failures[key] = entry
        self._failures.move_to_end(key)
        while len(self._failures) > self._max_tracked:
            self._failures.popitem(last=False)
        if entry.count <= self._free_failures:
            return 0.0
        return self._tarpit_delay
