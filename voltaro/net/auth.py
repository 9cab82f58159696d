"""Security profile 1 at the handshake: HTTP Basic auth checked before the upgrade.

OCPP 1.6 security whitepaper A00.FR.202-205 (R29/R30): the charger sends
``Authorization: Basic base64(<id>:<password>)`` on every upgrade; the username must be
the charge point id of the URL; the password is 16-20 raw bytes that need not be UTF-8.
The KDF (scrypt, ~40 ms) runs in a worker thread. A reconnect storm of chargers with
good credentials must not cost one KDF per connection, so successful verifications are
cached under an HMAC of the presented secret with a per-process key (the secret itself
is never kept).

Brute force (issue 11.9; scale-and-security RT6): failures are limited by two token
buckets, one per (id, source address) and one per source address, never per id alone
(that would let anyone lock a charger out). A source whose bucket is empty is refused
at once, before the KDF, with HTTP 429 and Retry-After: the attempt costs no CPU and
holds no socket. Failed attempts are logged once per source per minute, with a count,
not once per attempt.
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
class _Bucket:
    tokens: float
    at: float


class FailureBuckets:
    """Token buckets of allowed failures: ``burst`` at once, refilled at ``per_minute``."""

    def __init__(self, burst: int, per_minute: float, max_tracked: int = 10000) -> None:
        self._burst = float(burst)
        self._rate = per_minute / 60.0
        self._buckets: OrderedDict[object, _Bucket] = OrderedDict()
        self._max_tracked = max_tracked

    def _refilled(self, key: object, now: float) -> _Bucket | None:
        bucket = self._buckets.get(key)
        if bucket is not None:
            bucket.tokens = min(self._burst, bucket.tokens + (now - bucket.at) * self._rate)
            bucket.at = now
        return bucket

    def wait(self, key: object, now: float) -> float:
        """Seconds until one more failure is allowed (0: allowed now)."""
        bucket = self._refilled(key, now)
        if bucket is None or bucket.tokens >= 1 or self._burst < 1:
            return 0.0
        return (1 - bucket.tokens) / self._rate if self._rate > 0 else 3600.0

    def refund(self, key: object, now: float) -> None:
        bucket = self._refilled(key, now)
        if bucket is not None:
            bucket.tokens = min(self._burst, bucket.tokens + 1)

    def spend(self, key: object, now: float) -> None:
        bucket = self._refilled(key, now) or _Bucket(self._burst, now)
        bucket.tokens = max(0.0, bucket.tokens - 1)
        self._buckets[key] = bucket
        self._buckets.move_to_end(key)
        while len(self._buckets) > self._max_tracked:
            self._buckets.popitem(last=False)


@dataclass(slots=True)
class _SourceLog:
    window_start: float
    failures: int = 0
    refused: int = 0
    ids: set[str] | None = None


class PasswordChecker:
    """Verifies Basic credentials against a stored hash: cached, thread-offloaded, and
    limited per (id, source) and per source."""

    def __init__(
        self,
        *,
        verify: Callable[[bytes, str], bool] = verify_password,
        cache_size: int = 8192,
        kdf_threads: int = 4,
        failures_per_identity: int = 5,
        failures_per_source: int = 20,
        per_minute: float | None = None,
        log_interval: float = 60.0,
        max_tracked_sources: int = 10000,
    ) -> None:
        self._verify = verify
        self._key = os.urandom(32)
        self._cache: OrderedDict[tuple[str, str, bytes], None] = OrderedDict()
        self._cache_size = cache_size
        # scrypt with n=2**14 takes 16 MiB per call: bound how many run at once.
        self._kdf_limiter = trio.CapacityLimiter(kdf_threads)
        # Each bucket refills its burst once a minute unless told otherwise.
        self._by_identity = FailureBuckets(
            failures_per_identity,
            per_minute if per_minute is not None else failures_per_identity,
            max_tracked_sources,
        )
        self._by_source = FailureBuckets(
            failures_per_source,
            per_minute if per_minute is not None else failures_per_source,
            max_tracked_sources,
        )
        self._log_interval = log_interval
        self._source_logs: OrderedDict[str, _SourceLog] = OrderedDict()
        self._max_tracked = max_tracked_sources
        self.kdf_runs = 0
        self.failed = 0
        self.throttled = 0

    def _cache_key(
        self, charger_id: str, stored_hash: str, secret: bytes
    ) -> tuple[str, str, bytes]:
        tag = hmac.new(self._key, secret, hashlib.sha256).digest()
        return (charger_id, stored_hash, tag)

    def retry_after(self, charger_id: str, source: str) -> float:
        """Seconds this (id, source) must wait before it may try again; 0 when it may.

        Called before :meth:`check`; a positive answer is a refusal that costs no KDF.
        """
        now = trio.current_time()
        wait = max(
            self._by_identity.wait((charger_id, source), now),
            self._by_source.wait(source, now),
        )
        if wait > 0:
            self.throttled += 1
            self._note(source, charger_id, refused=True)
        return wait

    async def check(
        self,
        charger_id: str,
        stored_hash: str,
        credentials: BasicCredentials | None,
        source: str,
    ) -> bool:
        return await self.check_any(charger_id, (stored_hash,), credentials, source) is not None

    async def check_any(
        self,
        charger_id: str,
        stored_hashes: tuple[str, ...],
        credentials: BasicCredentials | None,
        source: str,
    ) -> str | None:
        """The stored hash the credentials match, or None (counted as one failure).

        A charger has more than one valid hash while a new password is being
        provisioned: the current one and those sent in ChangeConfiguration
        AuthorizationKey whose outcome is not settled yet (TC_073, a lost answer).

        The failure is reserved before the KDF runs and given back on success, so that
        parallel attempts cannot all pass :meth:`retry_after` while the first ones are
        still being verified.
        """
        now = trio.current_time()
        self._by_identity.spend((charger_id, source), now)
        self._by_source.spend(source, now)
        for stored_hash in stored_hashes:
            if await self._matches(charger_id, stored_hash, credentials):
                now = trio.current_time()
                self._by_identity.refund((charger_id, source), now)
                self._by_source.refund(source, now)
                return stored_hash
        self.failed += 1
        self._note(source, charger_id, refused=False)
        return None

    def _note(self, source: str, charger_id: str, *, refused: bool) -> None:
        """One security line per source per ``log_interval``, with the counts."""
        now = trio.current_time()
        entry = self._source_logs.get(source)
        if entry is not None and now - entry.window_start < self._log_interval:
            if refused:
                entry.refused += 1
            else:
                entry.failures += 1
            if entry.ids is not None and len(entry.ids) < 5:
                entry.ids.add(charger_id)
            return
        if entry is not None and (entry.failures or entry.refused):
            log.warning(
                "security: %d more failed authentications and %d refused attempts from %s "
                "in the last %g s (ids: %s)",
                entry.failures,
                entry.refused,
                source,
                self._log_interval,
                ", ".join(repr(i) for i in sorted(entry.ids or ())),
            )
        log.warning(
            "security: %s authentication for charge point %r from %s%s",
            "refused (too many failures)" if refused else "failed",
            charger_id,
            source,
            f"; further attempts from {source} are summarised every {self._log_interval:g} s",
        )
        self._source_logs[source] = _SourceLog(window_start=now, ids=set())
        self._source_logs.move_to_end(source)
        while len(self._source_logs) > self._max_tracked:
            self._source_logs.popitem(last=False)

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
