"""Security events at the connection edge: counted, one structured log line each, kept
for consoles and the API (issue 15, "Hardening"; scale-and-security RT list).

Kinds (the ``kind`` field, stable for log shippers and the API):

- ``auth_failed``: wrong or missing Basic credentials (profile 1/2);
- ``downgrade``: a charger registered at profile 2 or 3 came over plain ``ws://``
  (OCPP 1.6 security whitepaper A00.FR.003: one profile per charger, never lowered);
- ``client_certificate_missing``: a profile 3 charger sent no client certificate;
- ``certificate_cn_mismatch``: the certificate's subject CN is not the identity in the
  URL (A00.FR.405: it would let one charger's certificate speak for another);
- ``invalid_client_certificate``: the TLS handshake refused a certificate (expired,
  another CA): the identity is not known yet, only the address;
- ``takeover``: a second connection replaced a live one for the same identity (the
  newest wins, after authentication). More than ``TAKEOVER_LIMIT`` within
  ``TAKEOVER_WINDOW`` seconds for one identity raises ``takeover_alert``, at most once
  per window: two devices fighting over one id, or a stolen credential. Several nodes
  (issue 18): a claim that takes the id over from another node is counted with this
  node's takeovers (:meth:`SecurityEvents.taken_from_node`) without an event of its own
  (every charger of a node that died does it once).

The log line is ``security: event=KIND charger=ID remote=ADDR detail=...`` (values
quoted with repr when they hold spaces), one per event; the failed-password summary
lines of voltaro.net.auth stay as they are (rate-limited per source).
"""

from __future__ import annotations

import logging
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import trio

log = logging.getLogger("voltaro.security")

TAKEOVER_LIMIT = 5
TAKEOVER_WINDOW = 600.0
RECENT = 200  # events kept in memory for `ctl security events` and the API

KINDS = (
    "auth_failed",
    "downgrade",
    "client_certificate_missing",
    "certificate_cn_mismatch",
    "certificate_organization_mismatch",  # O is not certificate_organization (if set)
    "invalid_client_certificate",
    "takeover",
    "takeover_alert",
    "charger_reported",  # SecurityEventNotification from a charger (its own events)
    "csr_rejected",  # a SignCertificate CSR failed the checks (wrong CN, weak key, garbage)
    "certificate_signing_failed",  # the CA or its hook could not sign an accepted CSR
)

Publish = Callable[[dict[str, Any]], None]


@dataclass(frozen=True, slots=True)
class SecurityEvent:
    kind: str
    charger_id: str | None
    remote: str | None
    detail: str
    at: float  # wall clock (time.time), for display

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "charger_id": self.charger_id,
            "remote": self.remote,
            "detail": self.detail,
            "at": self.at,
        }


def _field(value: str | None) -> str:
    if value is None:
        return "-"
    return repr(value) if (" " in value or not value) else value


class SecurityEvents:
    def __init__(
        self,
        *,
        publish: Publish | None = None,
        wall_clock: Callable[[], float] | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        import time

        self.counts: Counter[str] = Counter()
        self.recent: deque[SecurityEvent] = deque(maxlen=RECENT)
        self.publish = publish
        self._wall = wall_clock or time.time
        self._clock = clock or trio.current_time
        self._takeovers: dict[str, deque[float]] = {}
        self._alerted: dict[str, float] = {}

    def record(
        self,
        kind: str,
        *,
        charger_id: str | None = None,
        remote: str | None = None,
        detail: str = "",
    ) -> None:
        event = SecurityEvent(kind, charger_id, remote, detail, self._wall())
        self.counts[kind] += 1
        self.recent.append(event)
        log.warning(
            "security: event=%s charger=%s remote=%s detail=%s",
            kind,
            _field(charger_id),
            _field(remote),
            _field(detail),
        )
        if self.publish is not None:
            self.publish(event.as_dict())
        if kind == "takeover" and charger_id is not None:
            self._count_takeover(charger_id, remote)

    def taken_from_node(self, charger_id: str, remote: str | None) -> None:
        """Several nodes: this node's claim took ``charger_id`` over from a row another
        node held (that node closes its socket). Counted towards ``takeover_alert`` as a
        takeover here is; not an event by itself: a node that died makes each of its
        chargers do this once, and the old node counts the closed socket in ``status``.
        Two devices with one id sent to different nodes keep doing it (A2
        "Duplicate-connection policy" §4)."""
        self._count_takeover(charger_id, remote)

    def _count_takeover(self, charger_id: str, remote: str | None) -> None:
        now = self._clock()
        times = self._takeovers.setdefault(charger_id, deque())
        times.append(now)
        while times and now - times[0] > TAKEOVER_WINDOW:
            times.popleft()
        if len(self._takeovers) > 10_000:  # bounded: forget the quietest identities
            for key in [k for k, v in self._takeovers.items() if not v][:1000]:
                del self._takeovers[key]
        if len(times) <= TAKEOVER_LIMIT:
            return
        last = self._alerted.get(charger_id)
        if last is not None and now - last < TAKEOVER_WINDOW:
            return
        self._alerted[charger_id] = now
        self.record(
            "takeover_alert",
            charger_id=charger_id,
            remote=remote,
            detail=(
                f"{len(times)} connections replaced each other within "
                f"{TAKEOVER_WINDOW / 60:g} minutes: two devices share this id, or its "
                "credentials are in other hands"
            ),
        )

    def summary(self) -> dict[str, Any]:
        return {
            "counts": {kind: self.counts.get(kind, 0) for kind in KINDS},
            "recent": [e.as_dict() for e in reversed(self.recent)],
        }
