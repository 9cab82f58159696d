"""What the console knows about the site: chargers, connectors, sessions, server health.

Pure data and rules (no Textual, no IO): built from the server's snapshot (`status`,
`chargers.list`) and kept current by events. Unit-testable on its own; the app renders
it. Every update is idempotent so events replayed after a resync do no harm.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

FAULT_STATUSES = frozenset({"Faulted"})
OCCUPIED_STATUSES = frozenset(
    {"Preparing", "Charging", "SuspendedEV", "SuspendedEVSE", "Finishing", "Reserved"}
)
DEFAULT_HEARTBEAT_S = 300


def parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


@dataclass(slots=True)
class Connector:
    connector_id: int
    status: str | None = None
    error_code: str | None = None
    info: str | None = None
    vendor_error_code: str | None = None
    availability: str = "Operative"
    status_at: str | None = None

    @property
    def faulted(self) -> bool:
        """Faulted, or reporting an error while still in another state (OCPP 1.6 §4.9:
        errorCode other than NoError is worth an operator's look)."""
        return self.status in FAULT_STATUSES or self.error_code not in (None, "", "NoError")


@dataclass(slots=True)
class Session:
    """An active transaction as the console tracks it."""

    transaction_id: int
    connector_id: int
    id_tag: str | None = None
    meter_start: int | None = None
    last_meter_wh: float | None = None
    last_power_w: float | None = None
    start_time: str | None = None
    state: str = "active"

    @property
    def energy_wh(self) -> float | None:
        """Session energy so far: the meter now minus meterStart (OCPP 1.6 §6.46)."""
        if self.last_meter_wh is None or self.meter_start is None:
            return None
        return max(0.0, self.last_meter_wh - self.meter_start)

    @classmethod
    def from_view(cls, t: dict[str, Any]) -> Session:
        return cls(
            transaction_id=int(t["transaction_id"]),
            connector_id=int(t.get("connector_id") or 0),
            id_tag=t.get("id_tag"),
            meter_start=t.get("meter_start"),
            last_meter_wh=t.get("last_meter_wh", t.get("meter_start")),
            last_power_w=t.get("last_power_w"),
            start_time=t.get("start_time"),
            state=str(t.get("state") or "active"),
        )


@dataclass(slots=True)
class Charger:
    charger_id: str
    registration: str = "Accepted"
    connected: bool = False
    vendor: str | None = None
    model: str | None = None
    last_seen: str | None = None
    connectors: dict[int, Connector] = field(default_factory=dict)
    sessions: dict[int, Session] = field(default_factory=dict)
    loaded: bool = True  # False: known only from an event, details come with the resync
    # Several nodes (issue 18): the node holding its connection (None: one node, or
    # not connected).
    node: str | None = None

    @classmethod
    def from_view(cls, c: dict[str, Any]) -> Charger:
        charger = cls(
            charger_id=str(c["charger_id"]),
            registration=str(c.get("registration") or "Accepted"),
            connected=bool(c.get("connected")),
            vendor=c.get("vendor"),
            model=c.get("model"),
            last_seen=c.get("last_seen"),
            node=c.get("node") if c.get("connected") else None,
        )
        for k in c.get("connectors") or []:
            cid = int(k["connector_id"])
            charger.connectors[cid] = Connector(
                connector_id=cid,
                status=k.get("status"),
                error_code=k.get("error_code"),
                info=k.get("info"),
                vendor_error_code=k.get("vendor_error_code"),
                availability=str(k.get("availability") or "Operative"),
                status_at=k.get("status_at"),
            )
        for t in c.get("active_transactions") or []:
            session = Session.from_view(t)
            charger.sessions[session.transaction_id] = session
        return charger

    # --- derived ---------------------------------------------------------------------

    @property
    def outlets(self) -> list[Connector]:
        """Connectors 1..n (0 is the charge point itself, OCPP 1.6 §4.9)."""
        return [self.connectors[k] for k in sorted(self.connectors) if k > 0]

    @property
    def faulted(self) -> bool:
        return any(c.faulted for c in self.connectors.values())

    @property
    def pending(self) -> bool:
        return self.registration == "Pending"

    @property
    def power_w(self) -> float:
        return sum(s.last_power_w or 0.0 for s in self.sessions.values())

    @property
    def energy_wh(self) -> float | None:
        values = [s.energy_wh for s in self.sessions.values() if s.energy_wh is not None]
        return sum(values) if values else None

    def session_on(self, connector_id: int) -> Session | None:
        for s in self.sessions.values():
            if s.connector_id == connector_id:
                return s
        return None

    def faults(self) -> list[Connector]:
        return [c for _, c in sorted(self.connectors.items()) if c.faulted]


# The alerts raised from the server's per-charger health flags.
HEALTH_FLAG_KEYS = (":flapping", ":drifting")


@dataclass(slots=True)
class Alert:
    """Something an operator must see: kept until acknowledged (issue 12, Events), also
    after the condition cleared (``active`` False), so a fault at 3 a.m. is not missed."""

    key: str  # one alert per thing: "CP-1#2:fault", "CP-1:offline", ":database"
    charger_id: str
    text: str
    at: str
    active: bool = True
    # False: raised from a snapshot, not from an event an operator may have missed (a
    # charger found offline at start): dropped, not kept as cleared, once it is over.
    sticky: bool = True

    @property
    def is_billing(self) -> bool:
        """An interrupted transaction or a stop that closed nothing (not a charger's
        state: counted on its own in the attention count)."""
        return ":tx" in self.key or ":stop:" in self.key

    @property
    def is_load(self) -> bool:
        """Site load management (issue 17): an overloaded circuit, a charger that
        refuses profiles (not a connector's state: counted on its own too)."""
        return ":load:" in self.key


class Site:
    """The console's model of the whole site."""

    def __init__(self) -> None:
        self.chargers: dict[str, Charger] = {}
        self.health: dict[str, Any] = {}
        self.alerts: dict[str, Alert] = {}

    # --- snapshot --------------------------------------------------------------------

    def load(
        self,
        status: dict[str, Any],
        listed: list[dict[str, Any]],
        interrupted: list[dict[str, Any]] | None = None,
        now: datetime | None = None,
    ) -> None:
        """The server's snapshot: `status`, `chargers.list` and, when read, the
        interrupted transactions (`transactions.list` state interrupted), which need an
        operator until closed, also those that ended before this console started."""
        now = now or datetime.now(UTC)
        self.set_health(status)
        self.chargers = {str(c["charger_id"]): Charger.from_view(c) for c in listed}
        for charger in self.chargers.values():
            for k in charger.connectors.values():
                if k.faulted or f"{charger.charger_id}#{k.connector_id}:fault" in self.alerts:
                    self._connector_alert(charger.charger_id, k, k.status_at or "")
            self._pending_alert(charger, charger.last_seen or "")
            # Offline at start counts once it is offline longer than the heartbeat
            # interval (as the attention count): a charger reconnecting after a server
            # restart is not an alert.
            offline = f"{charger.charger_id}:offline"
            if charger.connected:
                self._alert(offline, charger.charger_id, "", "", active=False)
            elif offline not in self.alerts and self.offline_too_long(charger, now):
                seen = charger.last_seen
                self._alert(
                    offline,
                    charger.charger_id,
                    "offline" if seen else "never seen",
                    seen or "",
                    active=True,
                    sticky=False,
                )
        for alert in self.alerts.values():
            if alert.key.endswith(":pending") and alert.charger_id not in self.chargers:
                alert.active = False
        if interrupted is not None:
            keys = set()
            for t in interrupted:
                key = f"{t.get('charger_id')}:tx{t['transaction_id']}"
                keys.add(key)
                self._tx_alert(t, "interrupted", str(t.get("stop_time") or ""))
            for alert in self.alerts.values():
                if ":tx" in alert.key and alert.key not in keys:
                    alert.active = False  # closed meanwhile

    def set_charger_flags(self, flagged: list[dict[str, Any]], at: str = "") -> None:
        """The server's health flags (`chargers.health` flagged, issue 19): a charger
        flapping or drifting is an alert with the reason, kept until acknowledged."""
        raised = set()
        for row in flagged:
            charger_id = str(row["charger_id"])
            for flag in row.get("flags") or []:
                key = f"{charger_id}:{flag['flag']}"
                raised.add(key)
                self._alert(key, charger_id, f"{flag['flag']}: {flag['reason']}", at, active=True)
        for key, alert in list(self.alerts.items()):
            if key.endswith(HEALTH_FLAG_KEYS) and key not in raised and alert.active:
                self._alert(key, alert.charger_id, alert.text, at, active=False)

    def set_health(self, status: dict[str, Any], at: str = "") -> None:
        self.health = {**self.health, **status}
        db = status.get("database")
        if isinstance(db, dict) and "ok" in db:
            self._alert(
                ":database",
                "",
                f"database down: {db.get('error') or 'not answering'}",
                at,
                active=not db["ok"],
            )

    # --- alerts ----------------------------------------------------------------------

    def set_load_alerts(self, live: dict[str, Any], at: str = "") -> None:
        """From a ``load.allocation`` round (issue 17): a circuit that offline and
        refusing chargers alone overload (nothing can be offered there: the breaker is
        at risk), and a charger that refuses charging profiles (counted at its full
        rating, parking others) are alerts until the condition clears and they are
        acknowledged."""
        raised = set()
        for name in live.get("overloaded") or []:
            key = f":load:{name}:overloaded"
            raised.add(key)
            text = (
                f"circuit {name} overloaded: offline and refusing chargers alone exceed "
                "its limit (l shows the site load)"
            )
            self._alert(key, "", text, at, active=True)
        for reserve in live.get("reserved") or []:
            if reserve.get("reason") != "rejects-profiles":
                continue
            charger_id = str(reserve.get("charger_id"))
            key = f"{charger_id}:load:refuses-profiles"
            raised.add(key)
            text = (
                f"refuses charging profiles: counted at its full rating "
                f"({reserve.get('amps')} A) until it boots again"
            )
            self._alert(key, charger_id, text, at, active=True)
        for key, alert in list(self.alerts.items()):
            if alert.is_load and key not in raised and alert.active:
                self._alert(key, alert.charger_id, alert.text, at, active=False)

    def _alert(
        self, key: str, charger_id: str, text: str, at: str, *, active: bool, sticky: bool = True
    ) -> None:
        """Open an alert when the condition holds; mark it cleared when it stops."""
        existing = self.alerts.get(key)
        if active:
            if existing is None or not existing.active or existing.text != text:
                self.alerts[key] = Alert(key, charger_id, text, at or "", True, sticky)
        elif existing is not None:
            if existing.sticky:
                existing.active = False
            else:
                del self.alerts[key]

    def _pending_alert(self, charger: Charger, at: str) -> None:
        """A charger waiting for acceptance needs an operator (OCPP 1.6 §4.2.1 Pending):
        listed with the alerts, so the attention count opens onto it (issue 12 #10)."""
        self._alert(
            f"{charger.charger_id}:pending",
            charger.charger_id,
            "waiting for acceptance: select it and press F6",
            at,
            active=charger.pending,
        )

    def _tx_alert(self, data: dict[str, Any], state: Any, at: str) -> None:
        tx = int(data["transaction_id"])
        self._alert(
            f"{data.get('charger_id')}:tx{tx}",
            str(data.get("charger_id") or ""),
            f"transaction {tx} {state}"
            + (f": {data['reason']}" if data.get("reason") else "")
            + " (F3 to reconcile)",
            at,
            active=state == "interrupted",
        )

    def acknowledge(self, key: str) -> None:
        self.alerts.pop(key, None)

    def _connector_alert(self, charger_id: str, k: Connector, at: str) -> None:
        details = [v for v in (k.error_code, k.vendor_error_code, k.info) if v and v != "NoError"]
        where = f"connector {k.connector_id}" if k.connector_id else "charger"
        self._alert(
            f"{charger_id}#{k.connector_id}:fault",
            charger_id,
            f"{where} {k.status or 'error'}" + (f": {', '.join(details)}" if details else ""),
            at,
            active=k.faulted,
        )

    @property
    def database_ok(self) -> bool:
        db = self.health.get("database")
        return bool(db.get("ok")) if isinstance(db, dict) else True

    @property
    def heartbeat_s(self) -> int:
        value = self.health.get("heartbeat_interval")
        return int(value) if isinstance(value, int | float) and value > 0 else DEFAULT_HEARTBEAT_S

    # --- events ----------------------------------------------------------------------

    def node_id(self) -> str | None:
        """The node this console is attached to (several nodes), from ``status``."""
        cluster = self.health.get("cluster")
        node = cluster.get("node_id") if isinstance(cluster, dict) else None
        return str(node) if node else None

    def apply(
        self, name: str, data: dict[str, Any], at: str | None = None, node: str | None = None
    ) -> bool:
        """Apply one event. False: it names a charger this model has not loaded yet
        (a skeleton row is made; the caller should resync to fill it in). ``node``: the
        node that published it, when another node of a cluster did (the frame's
        ``node``)."""
        if name == "server.health":
            self.set_health(data, at or "")
            return True
        if name == "security.event":
            # An alert per (charger or address, kind); never a skeleton charger row: the
            # id may be anything an attacker put in a URL.
            who = str(data.get("charger_id") or "")
            kind = str(data.get("kind") or "event")
            self._alert(
                f"{who or data.get('remote') or ''}:security:{kind}",
                who,
                f"security: {kind.replace('_', ' ')}"
                + (f" from {data['remote']}" if data.get("remote") else "")
                + (f": {data['detail']}" if data.get("detail") else ""),
                at or "",
                active=True,
            )
            return True
        if name == "chargers.seen":
            for charger_id, seen in (data.get("chargers") or {}).items():
                charger = self.chargers.get(charger_id)
                if charger is not None:
                    charger.last_seen = seen
            return True
        charger_id = data.get("charger_id")
        if not isinstance(charger_id, str):
            return True
        if name == "charger.removed":
            self.chargers.pop(charger_id, None)
            self._alert(f"{charger_id}:pending", charger_id, "", at or "", active=False)
            return True
        known = charger_id in self.chargers and self.chargers[charger_id].loaded
        charger = self.chargers.get(charger_id)
        if charger is None:
            charger = self.chargers[charger_id] = Charger(charger_id, loaded=False)
        self._apply(charger, name, data, at or "")
        if name == "charger.connected":
            charger.node = node or self.node_id()
        elif name == "charger.disconnected":
            charger.node = None
        when = data.get("at") or at
        # Not news from the charger: an operator's or the campaign runner's doing.
        if name not in ("charger.updated", "command.result", "campaign.progress") and when:
            charger.last_seen = when
        return known

    def _apply(self, charger: Charger, name: str, data: dict[str, Any], at: str) -> None:
        match name:
            case "charger.updated":
                if data.get("registration"):
                    charger.registration = str(data["registration"])
                self._pending_alert(charger, at)
            case "charger.connected":
                charger.connected = True
                self._alert(
                    f"{charger.charger_id}:offline", charger.charger_id, "", at, active=False
                )
            case "charger.disconnected":
                charger.connected = False
                reason = data.get("reason")
                self._alert(
                    f"{charger.charger_id}:offline",
                    charger.charger_id,
                    "went offline" + (f": {reason}" if reason else ""),
                    at,
                    active=True,
                )
            case "charger.boot":
                charger.vendor = data.get("vendor") or charger.vendor
                charger.model = data.get("model") or charger.model
                if data.get("status"):
                    charger.registration = str(data["status"])
                self._pending_alert(charger, at)
            case "connector.status":
                cid = int(data.get("connector_id") or 0)
                connector = charger.connectors.setdefault(cid, Connector(cid))
                connector.status = data.get("status")
                connector.error_code = data.get("error_code")
                connector.info = data.get("info")
                connector.vendor_error_code = data.get("vendor_error_code")
                connector.status_at = data.get("at")
                self._connector_alert(charger.charger_id, connector, data.get("at") or at)
            case "transaction.started":
                tx = int(data["transaction_id"])
                charger.sessions.setdefault(
                    tx,
                    Session(
                        transaction_id=tx,
                        connector_id=int(data.get("connector_id") or 0),
                        id_tag=data.get("id_tag"),
                        meter_start=data.get("meter_start"),
                        last_meter_wh=data.get("meter_start"),
                        start_time=data.get("start_time"),
                    ),
                )
            case "transaction.stopped":
                charger.sessions.pop(int(data["transaction_id"]), None)
            case "transaction.ended":
                # Ended without its StopTransaction (interrupted, refused, closed).
                charger.sessions.pop(int(data["transaction_id"]), None)
                self._tx_alert({**data, "charger_id": charger.charger_id}, data.get("state"), at)
            case "transaction.orphan_stop":
                # A StopTransaction that closed nothing: billing needs a look (F3, and
                # docs/reconciliation.md). Open until an operator acknowledges it.
                stop_tx, meter = data.get("transaction_id"), data.get("meter_stop")
                kind = data.get("kind") or "unknown"
                what = {
                    "unknown": "an unknown transaction",
                    "foreign": "another charger's transaction",
                    "conflict": "an already closed transaction, with another meterStop",
                }.get(kind, kind)
                self._alert(
                    f"{charger.charger_id}:stop:{stop_tx}:{meter}:{data.get('stop_time')}",
                    charger.charger_id,
                    f"stop for {what} ({stop_tx}, meter {meter} Wh) closed nothing"
                    " (F3 to reconcile)",
                    at,
                    active=True,
                )
            case "meter.values":
                session = charger.sessions.get(data.get("transaction_id") or -1)
                if session is None and data.get("connector_id"):
                    session = charger.session_on(int(data["connector_id"]))
                if session is not None:
                    if data.get("energy_wh") is not None:
                        session.last_meter_wh = data["energy_wh"]
                    if data.get("power_w") is not None:
                        session.last_power_w = data["power_w"]
            case _:
                pass

    # --- what needs attention --------------------------------------------------------

    def offline_too_long(self, charger: Charger, now: datetime) -> bool:
        if charger.connected:
            return False
        seen = parse_time(charger.last_seen)
        return seen is None or (now - seen).total_seconds() > self.heartbeat_s

    def attention_rank(self, charger: Charger, now: datetime) -> int:
        """Lower is more urgent: faulted, offline, pending, then the rest."""
        if charger.faulted:
            return 0
        if not charger.connected:
            return 1
        if charger.pending:
            return 2
        return 3

    def summary(self, now: datetime) -> SiteSummary:
        connectors = [k for c in self.chargers.values() for k in c.outlets]
        chargers = list(self.chargers.values())
        return SiteSummary(
            power_w=sum(c.power_w for c in chargers),
            charging=sum(len(c.sessions) for c in chargers),
            available=sum(1 for k in connectors if k.status == "Available"),
            occupied=sum(1 for k in connectors if k.status in OCCUPIED_STATUSES),
            faulted=sum(1 for k in connectors if k.faulted),
            unavailable=sum(1 for k in connectors if k.status == "Unavailable"),
            online=sum(1 for c in chargers if c.connected),
            offline=sum(1 for c in chargers if not c.connected),
            pending=sum(1 for c in chargers if c.pending),
            attention=sum(
                1 for c in chargers if c.faulted or c.pending or self.offline_too_long(c, now)
            )
            + sum(1 for a in self.alerts.values() if a.active and (a.is_billing or a.is_load)),
            database_ok=self.database_ok,
        )


@dataclass(frozen=True, slots=True)
class SiteSummary:
    power_w: float
    charging: int
    available: int
    occupied: int
    faulted: int
    unavailable: int
    online: int
    offline: int
    pending: int
    attention: int
    database_ok: bool
