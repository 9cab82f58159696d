"""Site load management (issue 17): keeps every charger's sessions within the circuits'
limits with OCPP 1.6 Smart Charging (§3.13), using the pure allocator of
voltaro/domain/load_allocation.py. docs/load-management.md is the operator's side.

- A round runs when a session starts or stops, a connector's status changes, a charger
  connects, boots or drops, a meter value shows a new draw, the circuits change, and
  at least every ``load_interval`` seconds.
- Each session's limit goes out as a TxProfile for its transaction (§3.13.3, Relative:
  it needs no clock), only when it moved by more than ``load_hysteresis_amps``. Lower
  limits are sent first and answered (or timed out) before higher ones go out, so the
  sum of limits stays within the circuits during a change.
- Each charger gets a TxDefaultProfile on connector 0 (§3.13.2), leased with the
  ChargePointMaxProfile below (same start and end): 0 A until the lease's end, so a
  session it starts before its TxProfile arrives draws nothing nobody allocated, then
  its fallback limit, for sessions it starts once it has lost us.
- And a leased ChargePointMaxProfile (§3.13.1): Absolute from our clock (the charger's
  is set by BootNotification and Heartbeat), its rating for ``load_fallback_lease_seconds``
  then its fallback with no end, renewed every third of the lease while it is
  connected. The composite is the lower of it and the Tx/TxDefault limit (§3.13.4), so a
  charger that loses us holds every session to the fallback on its own once the lease
  runs out; until then it may keep its sessions' TxProfiles, and it is counted so.
- Each charger's profile state is tracked: a Rejected or NotSupported answer, or a
  CALLERROR, marks it as one that does not obey: it is counted at its full rating
  until it boots again, and reported (event load.profile_refused and a log line).

Sends run in this service's nursery, each in its own task, one at a time per charger,
within a cancel scope: a charger that is slow to answer delays only itself (and, for
at most ``call_timeout``, the raises that wait for its cut).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

import trio

from voltaro.control.wire import Event
from voltaro.domain.charging_profiles import (
    ChargingProfile,
    ProfileKind,
    ProfileLimits,
    ProfilePurpose,
    RateUnit,
    Schedule,
    SchedulePeriod,
)
from voltaro.domain.circuits import ChargerWiring
from voltaro.domain.commands import CommandError, CommandErrorCode
from voltaro.domain.load_allocation import (
    Allocation,
    ChargerState,
    CircuitLoad,
    Grant,
    Policy,
    ProfileState,
    Session,
    Site,
    allocate,
)
from voltaro.domain.phase_use import PhaseUse, observe, terminal_currents
from voltaro.domain.ports import StorageUnavailable
from voltaro.domain.site_limits import EffectiveLimit, ExternalState, effective_limits
from voltaro.domain.timestamps import format_utc, utc_now
from voltaro.net.registry import Registry
from voltaro.service.charging_profiles import ChargingProfileService
from voltaro.service.circuits import CircuitService
from voltaro.service.external_load import ExternalLoads
from voltaro.service.hub import RESYNC, EventHub
from voltaro.settings import Settings
from voltaro.store import transactions
from voltaro.store.db import Database
from voltaro.store.errors import StorageError

log = logging.getLogger(__name__)

ACTOR = "load-manager"
# Profile ids of the load manager's own profiles (a profile with the same id replaces
# its predecessor, §5.16): the fallback on connector 0, and one TxProfile per connector.
DEFAULT_PROFILE_ID = 1700
TX_PROFILE_ID = 1700  # + connector id (>= 1)
# The leased ChargePointMaxProfile: its own id, so that it and the TxDefaultProfile on
# connector 0 never replace each other (§5.16: the same id replaces).
LEASE_PROFILE_ID = 1699
STACK_LEVEL = 1  # above an operator's level-0 profiles; an operator may go higher
# After an offline charger's lease has run out, how long it is still counted at what its
# sessions held: the charger applies the fallback at once, but its cars take up to 5 s
# to follow a new limit (IEC 61851-1, the EV's response to a PWM change); it also
# covers a charger clock a few seconds behind ours.
FALLBACK_SETTLE_SECONDS = 5.0
_WAKING = (
    "transaction.",
    "connector.status",
    "charger.connected",
    "charger.disconnected",
    "charger.boot",
)
# What the listener subscribes to (the hub's kinds filter): every other event (frames,
# heartbeats, commands, ...) is never built or queued for it (issue 14: a few µs per
# message on every server, circuits or not).
_KINDS = ("meter.values", "transaction", *_WAKING[1:])
_DEBOUNCE = 0.05  # events that arrive together (a boot and its status) make one round
_DRAW_STEP = 1.0  # A: a smaller change of a car's draw waits for the periodic round
# How often the effective limits (schedule boundaries, external values running out) are
# looked at between rounds: a change starts a round within this (no database read).
_LIMITS_TICK = 1.0


@dataclass(slots=True)
class _Memory:
    """What the last round decided for a session (fed back to the next)."""

    transaction_id: int
    parked: bool
    since: datetime
    offered: float | None = None


def _one_period(amps: float) -> Schedule:
    return Schedule(rate_unit=RateUnit.AMPS, periods=(SchedulePeriod(start_period=0, limit=amps),))


def tx_profile(connector_id: int, transaction_id: int, amps: float) -> ChargingProfile:
    """A session's limit: Relative, so it needs no clock on the charger (§3.13.3)."""
    return ChargingProfile(
        profile_id=TX_PROFILE_ID + connector_id,
        stack_level=STACK_LEVEL,
        purpose=ProfilePurpose.TX,
        kind=ProfileKind.RELATIVE,
        schedule=_one_period(amps),
        transaction_id=transaction_id,
    )


def lease_profile(
    rating: float, fallback: float, lease_seconds: int, start: datetime
) -> ChargingProfile:
    """The charger's own fallback (§3.13.1): its rating from ``start`` for
    ``lease_seconds``, then ``fallback`` with no end (no duration: the last period
    continues). Renewed while connected, so only a charger that cannot reach us gets to
    the second period. The first period is the rating, not the sessions' sum: the
    TxProfiles do the sharing, and a lease that never caps below them needs no update
    (nor ordering with them) when the offers move."""
    return ChargingProfile(
        profile_id=LEASE_PROFILE_ID,
        stack_level=STACK_LEVEL,
        purpose=ProfilePurpose.CHARGE_POINT_MAX,
        kind=ProfileKind.ABSOLUTE,
        schedule=Schedule(
            rate_unit=RateUnit.AMPS,
            periods=(
                SchedulePeriod(start_period=0, limit=rating),
                SchedulePeriod(start_period=lease_seconds, limit=fallback),
            ),
            start_schedule=start,
        ),
    )


def lease_expiry(profile: ChargingProfile) -> datetime:
    """When a lease falls to its fallback (by the charger's clock)."""
    assert profile.schedule.start_schedule is not None
    seconds = profile.schedule.periods[-1].start_period
    return profile.schedule.start_schedule + timedelta(seconds=seconds)


def fallback_profile(amps: float, lease_seconds: int, start: datetime) -> ChargingProfile:
    """The limit of sessions that have no TxProfile (yet), on connector 0 (§3.13.2),
    leased like the ChargePointMaxProfile (same start, same end): 0 A while the charger
    is connected, so a session that starts draws nothing before its TxProfile says how
    much (nobody allocated it more; the load demo saw new sessions take a fallback of
    16 A above a feeder's limit), and ``amps`` from the lease's end with no end, when
    the charger has lost us. Within the lease an offline charger's new sessions stay at
    0 A, so what its other sessions hold remains the bound the allocator counts."""
    return ChargingProfile(
        profile_id=DEFAULT_PROFILE_ID,
        stack_level=0,
        purpose=ProfilePurpose.TX_DEFAULT,
        kind=ProfileKind.ABSOLUTE,
        schedule=Schedule(
            rate_unit=RateUnit.AMPS,
            periods=(
                SchedulePeriod(start_period=0, limit=0.0),
                SchedulePeriod(start_period=lease_seconds, limit=amps),
            ),
            start_schedule=start,
        ),
    )


class LoadManager:
    def __init__(
        self,
        db: Database,
        registry: Registry,
        hub: EventHub,
        circuits: CircuitService,
        profiles: ChargingProfileService,
        settings: Settings,
        external: ExternalLoads | None = None,
    ) -> None:
        self._db = db
        self._external = external
        self._registry = registry
        self._hub = hub
        self._circuits = circuits
        self._profiles = profiles
        self._settings = settings
        self._wake = trio.Event()
        self._memory: dict[tuple[str, int], _Memory] = {}
        self._draw: dict[tuple[str, int], float] = {}
        # The phases each session draws on, from its per-phase meter values.
        self._phase_use: dict[tuple[str, int], PhaseUse] = {}
        # (charger, connector) -> (transaction id, limit) the charger accepted, and the
        # one sent without an answer yet (or lost: the charger may apply it anyway).
        self._accepted: dict[tuple[str, int], tuple[int, float]] = {}
        self._unanswered: dict[tuple[str, int], tuple[int, float]] = {}
        self._states: dict[str, ProfileState] = {}
        self._booted: set[str] = set()  # chargers whose fallback is still to be sent
        # The start of the lease each charger accepted last: its TxDefaultProfile is
        # sent with the same start, so both leases end together.
        self._lease_start: dict[str, datetime] = {}
        self._fallback: set[str] = set()  # chargers that accepted it since we started
        # The lease (ChargePointMaxProfile) per charger: when the one it accepted last
        # falls to the fallback, when one sent without an answer would (it may have
        # applied it), and when the next renewal is due (trio time; none: at once).
        self._lease_expires: dict[str, datetime] = {}
        self._lease_unanswered: dict[str, datetime] = {}
        self._lease_renew_at: dict[str, float] = {}
        self._deadline = -math.inf  # the next round at the latest (trio time)
        self._waiting: trio.CancelScope | None = None  # the run loop's wait for a wake
        self._busy: set[str] = set()  # chargers with a profile in flight
        self._busy_tx: set[str] = set()  # ... a session's TxProfile
        self._again: set[str] = set()  # chargers with a change that waits for _busy
        self._latest: dict[str, Any] | None = None
        self._site: Site | None = None
        self._site_read_at = 0.0
        # The wiring of ``_wired_site``'s chargers by id, rebuilt when the site is read
        # again: looked up per meter value (a scan of site.chargers would be O(chargers)).
        self._wired_site: Site | None = None
        self._wiring_of: dict[str, ChargerWiring] = {}
        self._limits: dict[str, EffectiveLimit] = {}  # the last round's effective limits
        self._stale: set[str] = set()  # circuits whose external value ran out (logged)
        # Chargers on a circuit in the last round, and ones taken off it whose lease and
        # TxDefaultProfile are still to be cleared (offline: at their next connect).
        self._wired: set[str] = set()
        self._unwired: set[str] = set()
        self.site_reads = 0
        self.rounds = 0
        self.sent = 0

    @property
    def policy(self) -> Policy:
        s = self._settings
        return Policy(
            mode=s.load_policy,
            min_amps=s.load_min_amps,
            rotation_seconds=s.load_rotation_seconds,
            headroom_amps=s.load_headroom_amps,
            voltage=s.load_voltage,
        )

    def changed(self) -> None:
        """Recompute soon (the circuits changed): the tree is read again."""
        self._site = None
        self._wake.set()

    def limits_changed(self) -> None:
        """Recompute soon (an external load was pushed): the tree stays as read."""
        self._wake.set()

    async def _current_site(self) -> Site:
        """The circuit tree, read when it changed (``changed``) or once per
        ``load_interval``: not on every session, status and meter event of a storm."""
        now = trio.current_time()
        if self._site is None or now - self._site_read_at >= self._settings.load_interval:
            self._site = await self._circuits.site()
            self._site_read_at = now
            self.site_reads += 1
        return self._site

    def live(self) -> dict[str, Any] | None:
        """The latest allocation as JSON (circuits.list, GET /circuits); None before the
        first round or without circuits."""
        return self._latest

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            await nursery.start(self._listen)
            nursery.start_soon(self._watch_limits)
            task_status.started()
            while True:
                # At least every load_interval, and when a lease is due for renewal or
                # an offline charger's lease runs out (it is counted lower from then).
                deadline = trio.current_time() + self._settings.load_interval
                with trio.move_on_at(min(deadline, self._deadline)) as self._waiting:
                    await self._wake.wait()
                self._waiting = None
                await trio.sleep(_DEBOUNCE)
                self._wake = trio.Event()
                try:
                    await self._round(nursery)
                except (StorageError, StorageUnavailable) as exc:
                    # The next event or interval tries again; the chargers keep the
                    # limits they have (a database outage is logged by its health).
                    log.debug("load allocation skipped: database unavailable: %s", exc)

    def _effective(self, site: Site, now: datetime) -> dict[str, EffectiveLimit]:
        s = self._settings
        return effective_limits(
            site.circuits,
            schedule=s.load_schedule,
            pushed={} if self._external is None else self._external.values(),
            expected=s.external_load_circuits,
            fallback_amps=s.external_load_fallback_amps,
            voltage=s.load_voltage,
            now=now,
            local=datetime.now().astimezone(),  # the schedule is in the server's local time
        )

    async def _watch_limits(self) -> None:
        """A schedule boundary or an external value running out changes a circuit's
        limit without any event: look once per ``_LIMITS_TICK`` (pure, no database)
        and start a round when a limit moved."""
        while True:
            await trio.sleep(_LIMITS_TICK)
            site = self._site
            if site is None or not site.circuits or not self._limits:
                continue
            now = utc_now()
            if {k: v.limit for k, v in self._effective(site, now).items()} != {
                k: v.limit for k, v in self._limits.items()
            }:
                self._wake.set()

    def _note_limits(self, limits: dict[str, EffectiveLimit]) -> None:
        """Log once when a circuit's external value runs out, and when it is back."""
        for name, limit in limits.items():
            fallback = limit.external in (ExternalState.STALE, ExternalState.MISSING)
            if fallback and name not in self._stale:
                self._stale.add(name)
                log.warning(
                    "external load on circuit %s is %s: assuming %s A of other load "
                    "(external_load_fallback_amps) until the next value",
                    name,
                    "out of date" if limit.external is ExternalState.STALE else "not reported yet",
                    "/".join(f"{a:g}" for a in limit.external_amps or ()),
                )
            elif not fallback and name in self._stale:
                self._stale.discard(name)
                log.info("external load on circuit %s is reported again", name)
        self._limits = limits

    async def _listen(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        async with self._hub.subscribe(kinds=_KINDS) as subscription:
            task_status.started()
            while True:
                event = await subscription.receive()
                if event == RESYNC or isinstance(event, str):
                    self._wake.set()
                    continue
                data = event.data
                if event.name == Event.METER_VALUES:
                    self._note_draw(data)
                elif event.name.startswith(_WAKING):
                    charger_id = str(data.get("charger_id"))
                    if event.name == Event.CHARGER_CONNECTED:
                        self._lease_renew_at.pop(charger_id, None)  # renewed at once
                        if charger_id not in self._fallback:
                            self._booted.add(charger_id)  # first seen since we started
                    if event.name == Event.CHARGER_BOOT and data.get("status") == "Accepted":
                        # A new boot: it may have lost its profiles (§3.13) and its
                        # firmware may obey now; the fallback goes out again.
                        self._booted.add(charger_id)
                        self._states.pop(charger_id, None)
                        for leases in (
                            self._lease_expires,
                            self._lease_unanswered,
                            self._lease_renew_at,
                            self._lease_start,
                        ):
                            leases.pop(charger_id, None)
                        for known in (self._accepted, self._unanswered):
                            for key in [k for k in known if k[0] == charger_id]:
                                del known[key]
                    self._wake.set()

    def _note_draw(self, data: dict[str, Any]) -> None:
        current = data.get("current_phase_a")
        if current is None:
            current = data.get("current_a")
        connector = data.get("connector_id")
        if not isinstance(current, int | float) or not isinstance(connector, int):
            return
        key = (str(data.get("charger_id")), connector)
        before = self._draw.get(key)
        self._draw[key] = float(current)
        site = self._site
        wiring = None
        if site is not None:
            if site is not self._wired_site:
                self._wiring_of = {}
                for w in site.chargers:
                    self._wiring_of.setdefault(w.charger_id, w)  # the first, as Site.wiring
                self._wired_site = site
            wiring = self._wiring_of.get(key[0])
            if wiring is None:
                # On no circuit: allocation leaves its sessions unmanaged, so its draw
                # moves no limit and its phase use counts nowhere (issue 14: no round,
                # no phase tracking per meter value). Wired later (``changed``), it
                # starts on all its phases, the safe side (phase_use).
                self._phase_use.pop(key, None)
                return
        if before is None or abs(before - current) >= _DRAW_STEP:
            self._wake.set()
        lines = terminal_currents(data.get("current_phases_a"))
        if lines is not None:
            use = self._phase_use.get(key, PhaseUse())
            after = observe(use, lines, 3 if wiring is None else len(wiring.phases))
            self._phase_use[key] = after
            if after.phases_used != use.phases_used:
                # Widening at once is what keeps a wrong narrowing to one meter interval.
                self._wake.set()

    def lease_expires(self, charger_id: str) -> datetime | None:
        """When the charger falls to its fallback on its own: the later of the lease it
        accepted last and one it was sent without our hearing the answer (it may have
        applied it). None: no lease known."""
        known = [
            m
            for m in (self._lease_expires.get(charger_id), self._lease_unanswered.get(charger_id))
            if m is not None
        ]
        return max(known) if known else None

    def _settled(self, charger_id: str) -> datetime | None:
        """From when an offline charger is counted at its fallback."""
        expires = self.lease_expires(charger_id)
        return None if expires is None else expires + timedelta(seconds=FALLBACK_SETTLE_SECONDS)

    async def _round(self, nursery: trio.Nursery) -> None:
        self._deadline = math.inf
        site = await self._current_site()
        self._release_unwired(nursery, site)
        if not site.circuits:
            self._latest = None
            return
        active = await self._db.run(transactions.list_transactions, active=True, limit=100_000)
        now = utc_now()
        wiring = {w.charger_id: w for w in site.chargers}
        holding: dict[str, float] = {}
        for key in set(self._accepted) | set(self._unanswered):
            # What a charger that drops may keep applying: the higher of the limit it
            # accepted and one it may have applied without our hearing its answer.
            amps = max(self._accepted.get(key, (0, 0.0))[1], self._unanswered.get(key, (0, 0.0))[1])
            holding[key[0]] = holding.get(key[0], 0.0) + amps
        states = {
            w.charger_id: ChargerState(
                charger_id=w.charger_id,
                online=self._registry.is_connected(w.charger_id),
                profiles=self._states.get(w.charger_id, ProfileState.UNKNOWN),
                holding_amps=holding.get(w.charger_id, 0.0),
                lease_expires=self._settled(w.charger_id),
            )
            for w in site.chargers
        }
        sessions = []
        seen: set[tuple[str, int]] = set()
        for tx in active:
            key = (tx.charger_id, tx.connector_id)
            seen.add(key)
            memory = self._memory.get(key)
            if memory is None or memory.transaction_id != tx.transaction_id:
                memory = _Memory(transaction_id=tx.transaction_id, parked=True, since=tx.start_time)
                self._memory[key] = memory
                self._draw.pop(key, None)
                self._phase_use.pop(key, None)
            sessions.append(
                Session(
                    charger_id=tx.charger_id,
                    connector_id=tx.connector_id,
                    transaction_id=tx.transaction_id,
                    priority=wiring[tx.charger_id].priority if tx.charger_id in wiring else 0,
                    id_tag=tx.id_tag,
                    phases_used=self._phase_use.get(key, PhaseUse()).phases_used,
                    draw_amps=self._draw.get(key),
                    offered_amps=memory.offered,
                    parked=memory.parked,
                    since=min(memory.since, now),
                )
            )
        for key in set(self._memory) - seen:
            del self._memory[key]
            self._phase_use.pop(key, None)
            self._accepted.pop(key, None)
            self._unanswered.pop(key, None)
        limits = self._effective(site, now)
        self._note_limits(limits)
        site = replace(site, limits={k: v.limit for k, v in limits.items()})
        allocation = allocate(site, states, sessions, self.policy, now)
        self.rounds += 1
        for grant in allocation.grants:
            memory = self._memory[(grant.charger_id, grant.connector_id)]
            memory.parked = grant.parked is not None
            memory.since = grant.since
            memory.offered = grant.amps
        self._latest = self._view(allocation, site, states, now)
        self._hub.publish(Event.LOAD_ALLOCATION, self._latest)
        await self._enforce(nursery, allocation, site, states)
        self._plan_next(states, now)

    def _release_unwired(self, nursery: trio.Nursery, site: Site) -> None:
        """A charger taken off the circuits is no longer managed: what it holds of ours
        beyond a transaction (the leased ChargePointMaxProfile, which ends at its
        fallback when not renewed, and the TxDefaultProfile at 0 A) is cleared (§5.5),
        or it would stay at its fallback until it boots again. Its sessions keep their
        TxProfiles until they end (§3.13.3)."""
        wired = {w.charger_id for w in site.chargers}
        self._unwired = (self._unwired | (self._wired - wired)) - wired
        self._wired = wired
        for charger_id in sorted(self._unwired):
            if charger_id in self._busy or not self._registry.is_connected(charger_id):
                continue
            self._unwired.discard(charger_id)
            for known in (
                self._lease_expires,
                self._lease_unanswered,
                self._lease_renew_at,
                self._lease_start,
                self._states,
            ):
                known.pop(charger_id, None)
            self._fallback.discard(charger_id)
            self._booted.discard(charger_id)
            self._busy.add(charger_id)
            nursery.start_soon(self._release, charger_id)

    async def _release(self, charger_id: str) -> None:
        cleared = True
        try:
            for profile_id in (LEASE_PROFILE_ID, DEFAULT_PROFILE_ID):
                with trio.move_on_after(self._settings.call_timeout + 5.0):
                    await self._profiles.clear(charger_id, actor=ACTOR, profile_id=profile_id)
        except CommandError as exc:
            log.debug("load profiles of %s not cleared: %s", charger_id, exc)
            cleared = False
        except (StorageError, StorageUnavailable) as exc:
            log.debug("load profiles of %s cleared, not stored: %s", charger_id, exc)
        finally:
            self._busy.discard(charger_id)
        if not cleared and charger_id not in self._wired:
            self._unwired.add(charger_id)  # tried again at its next connect's round

    def _round_by(self, moment: float) -> None:
        """A round at ``moment`` (trio time) at the latest, even if the run loop waits."""
        self._deadline = min(self._deadline, moment)
        if self._waiting is not None:
            self._waiting.deadline = min(self._waiting.deadline, moment)

    def _plan_next(self, states: dict[str, ChargerState], now: datetime) -> None:
        """The next round at the latest: a renewal due, or an offline charger whose lease
        runs out (counted at its fallback from then on)."""
        clock = trio.current_time()
        deadline = math.inf
        for charger_id, state in states.items():
            if state.online:
                due = self._lease_renew_at.get(charger_id)
                if due is not None:
                    deadline = min(deadline, due)
            elif state.lease_expires is not None and state.lease_expires > now:
                # Just past it, so that the round sees it expired.
                left = (state.lease_expires - now).total_seconds() + 0.01
                deadline = min(deadline, clock + left)
        self._deadline = deadline

    async def _enforce(
        self,
        nursery: trio.Nursery,
        allocation: Allocation,
        site: Site,
        states: dict[str, ChargerState],
    ) -> None:
        hysteresis = self._settings.load_hysteresis_amps
        wiring = {w.charger_id: w for w in site.chargers}
        cuts: list[tuple[str, int, ChargingProfile]] = []
        raises: list[tuple[str, int, ChargingProfile]] = []
        seconds = self._settings.load_fallback_lease_seconds
        now = utc_now().replace(microsecond=0)
        for charger_id in sorted(self._booted):
            if charger_id in wiring and states[charger_id].online and charger_id not in self._busy:
                self._booted.discard(charger_id)
                start = self._lease_start.get(charger_id, now)
                if start + timedelta(seconds=seconds) <= now:
                    start = now
                profile = fallback_profile(wiring[charger_id].fallback_amps, seconds, start)
                cuts.append((charger_id, 0, profile))
        leases = self._leases_due(site, states)
        held_cut = False  # a cut that waits for its charger's answer to something else
        for grant in allocation.grants:
            if grant.transaction_id is None:
                continue
            if not states[grant.charger_id].online:
                continue
            key = (grant.charger_id, grant.connector_id)
            before = self._accepted.get(key)
            if before is not None and before[0] == grant.transaction_id:
                # Only a small raise waits: a cut left unsent would keep the limits in
                # force above what the circuits allow (the allocator counts the grant).
                if 0 < before[1] <= grant.amps <= before[1] + hysteresis:
                    continue
                if before[1] == grant.amps:
                    continue
                baseline = before[1]
                lost = self._unanswered.get(key)
                if lost is not None and lost[0] == grant.transaction_id:
                    # Sent without an answer: the charger may apply it (the higher counts).
                    baseline = max(baseline, lost[1])
            else:
                # A new session: at 0 A under the leased TxDefaultProfile once the
                # charger took it, else at its fallback (it may have none yet).
                baseline = (
                    0.0
                    if grant.charger_id in self._fallback
                    else wiring[grant.charger_id].fallback_amps
                )
            if grant.charger_id in self._busy:
                # Its charger answers something else first (one at a time per charger,
                # a lease renewal too): a cut held so holds every raise (below).
                self._again.add(grant.charger_id)
                held_cut = held_cut or grant.amps <= baseline
                continue
            profile = tx_profile(grant.connector_id, grant.transaction_id, grant.amps)
            item = (grant.charger_id, grant.connector_id, profile)
            (cuts if grant.amps <= baseline else raises).append(item)
        # One profile per charger per round (the command layer sends one at a time
        # anyway); a charger with more to send gets another round once it has answered.
        wanted = cuts + raises + leases
        sending = _one_per_charger(cuts, set())
        # A cut left for its charger's next turn (behind its TxDefaultProfile, say)
        # holds the raises as one in flight does.
        held_cut = held_cut or len(sending) < len(cuts)
        cuts = sending
        raises = _one_per_charger(raises, {c[0] for c in cuts})
        for charger_id, connector_id, profile in cuts:
            self._start(nursery, charger_id, connector_id, profile)
        if self._busy_tx or held_cut:
            # Cuts (these, earlier ones, or ones held behind a charger's other profile)
            # are not answered yet: a charger may still apply a higher limit than it is
            # counted at, so raises wait for the round after its answer (safety first;
            # bounded by the call timeout).
            raises = []
        for charger_id, connector_id, profile in raises:
            self._start(nursery, charger_id, connector_id, profile)
        # A lease renewal goes last: it changes no limit in force (its first period is
        # the rating), and it has two thirds of the lease to get through.
        leases = _one_per_charger(leases, set(self._busy))
        for charger_id, connector_id, profile in leases:
            self._start(nursery, charger_id, connector_id, profile)
        # What was wanted but not sent goes out after the next answer (one at a time per
        # charger, raises after cuts, a lease behind the charger's other profile): a
        # send in flight is what it waits for, and nothing else would wake a round.
        started = {id(item) for item in cuts + raises + leases}
        self._again |= {item[0] for item in wanted if id(item) not in started}

    def _leases_due(
        self, site: Site, states: dict[str, ChargerState]
    ) -> list[tuple[str, int, ChargingProfile]]:
        """The leases to send now: to every connected charger on a circuit that obeys
        profiles, at boot or connect and then every third of the lease."""
        clock = trio.current_time()
        seconds = self._settings.load_fallback_lease_seconds
        start = utc_now().replace(microsecond=0)  # whole seconds, as OCPP times go
        out = []
        for wiring in site.chargers:
            state = states[wiring.charger_id]
            if not state.online or state.profiles is ProfileState.REJECTED:
                continue
            if self._lease_renew_at.get(wiring.charger_id, -math.inf) > clock:
                continue
            profile = lease_profile(wiring.max_amps, wiring.fallback_amps, seconds, start)
            out.append((wiring.charger_id, 0, profile))
        return out

    def _start(
        self, nursery: trio.Nursery, charger_id: str, connector_id: int, profile: ChargingProfile
    ) -> None:
        """Send in this service's nursery: nobody waits for a slow charger."""
        self._busy.add(charger_id)
        if profile.purpose is ProfilePurpose.TX and profile.transaction_id is not None:
            self._busy_tx.add(charger_id)
            limit = profile.schedule.periods[0].limit
            self._unanswered[(charger_id, connector_id)] = (profile.transaction_id, limit)
        if profile.purpose is ProfilePurpose.CHARGE_POINT_MAX:
            # It may be applied even if its answer is lost: counted from now on.
            expires = lease_expiry(profile)
            self._lease_unanswered[charger_id] = max(
                expires, self._lease_unanswered.get(charger_id, expires)
            )
            # Not again before its answer; then a third of the lease on.
            self._lease_renew_at[charger_id] = math.inf
        nursery.start_soon(self._send, charger_id, connector_id, profile)

    async def _send(self, charger_id: str, connector_id: int, profile: ChargingProfile) -> None:
        """One SetChargingProfile, within a cancel scope; the answer updates the charger's
        profile state. ``_busy`` holds the charger until it is answered."""
        amps = profile.schedule.periods[0].limit
        sent_at = trio.current_time()
        answer: str | None = None
        try:
            with trio.move_on_after(self._settings.call_timeout + 5.0):
                result = await self._profiles.set(
                    charger_id, connector_id, profile, actor=ACTOR, limits=ProfileLimits()
                )
                answer = str(result.get("status"))
        except CommandError as exc:
            if exc.code is CommandErrorCode.CALL_ERROR:
                answer = f"CALLERROR ({exc.message})"
            else:
                # Offline, timed out, busy, or the transaction ended meanwhile: the next
                # round decides again.
                log.debug("load limit for %s/%d not sent: %s", charger_id, connector_id, exc)
        except (StorageError, StorageUnavailable) as exc:
            log.debug("load limit for %s/%d not stored: %s", charger_id, connector_id, exc)
        finally:
            self._busy.discard(charger_id)
            self._busy_tx.discard(charger_id)
            if self._again:
                # Changes were held for this answer (its charger's, or raises).
                self._again.clear()
                self._wake.set()
        self.sent += 1
        lease = profile.purpose is ProfilePurpose.CHARGE_POINT_MAX
        if lease and answer != "Accepted":
            self._lease_renew_at.pop(charger_id, None)  # due again at the next round
        if answer == "Accepted":
            self._states[charger_id] = ProfileState.ACCEPTED
            if lease:
                expires = lease_expiry(profile)
                self._lease_expires[charger_id] = max(
                    expires, self._lease_expires.get(charger_id, expires)
                )
                if self._lease_unanswered.get(charger_id) == expires:
                    del self._lease_unanswered[charger_id]
                renew = self._settings.load_fallback_lease_seconds / 3
                self._lease_renew_at[charger_id] = sent_at + renew
                self._round_by(sent_at + renew)
                # The TxDefaultProfile's lease follows, with the same start and end.
                assert profile.schedule.start_schedule is not None
                self._lease_start[charger_id] = max(  # answers may come out of order
                    profile.schedule.start_schedule,
                    self._lease_start.get(charger_id, profile.schedule.start_schedule),
                )
                self._booted.add(charger_id)
                self._wake.set()
            if profile.purpose is ProfilePurpose.TX_DEFAULT:
                self._fallback.add(charger_id)
            if profile.transaction_id is not None:
                self._accepted[(charger_id, connector_id)] = (profile.transaction_id, amps)
                self._unanswered.pop((charger_id, connector_id), None)
            return
        if answer is None:
            if profile.purpose is ProfilePurpose.TX_DEFAULT:
                self._booted.add(charger_id)  # not answered: sent again next round
            self._wake.set()
            return
        if self._states.get(charger_id) is not ProfileState.REJECTED:
            log.warning(
                "charger %s refused a %s of %g A (%s): it is counted at its full rating "
                "until it boots again",
                charger_id,
                profile.purpose.value,
                amps,
                answer,
            )
            self._hub.publish(
                Event.LOAD_PROFILE_REFUSED,
                {
                    "charger_id": charger_id,
                    "connector_id": connector_id,
                    "purpose": profile.purpose.value,
                    "answer": answer,
                },
            )
        self._states[charger_id] = ProfileState.REJECTED
        self._unanswered.pop((charger_id, connector_id), None)
        if lease:
            self._lease_unanswered.pop(charger_id, None)  # refused: not applied
        self._wake.set()

    def _view(
        self, allocation: Allocation, site: Site, states: dict[str, ChargerState], now: datetime
    ) -> dict[str, Any]:
        def lease(charger_id: str) -> str | None:
            expires = self.lease_expires(charger_id)
            return None if expires is None else format_utc(expires)

        def session(grant: Grant) -> dict[str, Any]:
            key = (grant.charger_id, grant.connector_id)
            accepted = self._accepted.get(key)
            return {
                "charger_id": grant.charger_id,
                "connector_id": grant.connector_id,
                "transaction_id": grant.transaction_id,
                "amps": grant.amps,
                "cap_amps": grant.cap_amps,
                "draw_amps": self._draw.get(key),
                "accepted_amps": None if accepted is None else accepted[1],
                "phases": [p.value for p in grant.phases],
                # "meter": narrowed from its per-phase meter values; "wiring": all of
                # its charger's phases (nothing measured says otherwise).
                "phases_from": "wiring"
                if self._phase_use.get(key, PhaseUse()).phases_used is None
                else "meter",
                "parked": None if grant.parked is None else grant.parked.value,
                "detail": grant.detail,
                "since": format_utc(grant.since),
                # The higher of its charger's and its id tag's (docs/load-management.md).
                "priority": grant.priority,
                "priority_from": grant.priority_from,
            }

        return {
            "computed_at": format_utc(now),
            "policy": self.policy.mode.value,
            "loads": [self._load_view(load) for load in allocation.loads],
            "sessions": [session(g) for g in allocation.grants],
            "reserved": [
                {
                    "charger_id": r.charger_id,
                    "amps": r.amps,
                    "reason": r.reason.value,
                    "phases": [p.value for p in r.phases],
                    "lease_expires_at": lease(r.charger_id),
                }
                for r in allocation.reserved
            ],
            "chargers": {
                w.charger_id: self._states.get(w.charger_id, ProfileState.UNKNOWN).value
                for w in site.chargers
            },
            # Each charger's ChargePointMaxProfile lease: when it falls to its fallback
            # on its own (None: no lease known), and whether that time has passed.
            "lease_seconds": self._settings.load_fallback_lease_seconds,
            "leases": {
                w.charger_id: {
                    "online": states[w.charger_id].online,
                    "expires_at": lease(w.charger_id),
                    "expired": (expires := self.lease_expires(w.charger_id)) is not None
                    and now >= expires,
                }
                for w in site.chargers
            },
            "overloaded": list(allocation.overloaded),
            "unmanaged": [{"charger_id": c, "connector_id": k} for c, k in allocation.unmanaged],
        }

    def _load_view(self, load: CircuitLoad) -> dict[str, Any]:
        effective = load.effective
        amps = None if effective is None else effective.amps
        limit = self._limits.get(load.circuit_id)
        return {
            "circuit": load.circuit_id,
            "amps": [round(a, 3) for a in load.amps],
            "limit_amps": load.limit_amps,
            "limit_kw": load.limit_kw,
            "kw": round(load.kw, 3),
            # Against the limit in force (schedule, other load), on its fullest phase.
            "headroom_amps": None
            if amps is None
            else round(min(e - a for e, a in zip(amps, load.amps, strict=True)), 3),
            "effective_limit_amps": None if amps is None else [round(a, 3) for a in amps],
            "effective_limit_kw": None
            if effective is None or effective.kw is None
            else round(effective.kw, 3),
            "limit_source": "configured" if limit is None else limit.source,
            "schedule_amps": None if limit is None else limit.schedule_amps,
            "external_load": None
            if limit is None or limit.external is ExternalState.NONE
            else {
                "state": limit.external.value,
                "amps": None if limit.external_amps is None else list(limit.external_amps),
            },
        }


def _one_per_charger(
    items: list[tuple[str, int, ChargingProfile]], taken: set[str]
) -> list[tuple[str, int, ChargingProfile]]:
    out = []
    for item in items:
        if item[0] not in taken:
            taken.add(item[0])
            out.append(item)
    return out


__all__ = ["LoadManager", "fallback_profile", "lease_profile", "tx_profile"]
