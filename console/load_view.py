"""Site load management as the console draws it (issue 17, docs/load-management.md):
each circuit's load per phase against its limit as bars with a sparkline of recent
load, each session's offered and drawn current, parked sessions and why, chargers that
do not follow limits and what they are counted at, overloaded circuits.

Pure: the wire's ``circuits.list`` result (``circuits``: the tree, ``live``: the latest
round) and the ``load.allocation`` event (the same ``live`` view) in, Rich Text out.
The screen that reads, follows events and redraws is console/load_screen.py.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from rich.text import Text

from console.model import parse_time

EMPTY = "no circuits configured: see voltaro ctl circuits add"
WAITING = "circuits configured; waiting for the first allocation round"
PHASES = ("L1", "L2", "L3")
FULL, EIGHTHS, HOLE, OTHER = "█", " ▏▎▍▌▋▊▉", "░", "▒"
SPARKS = "▁▂▃▄▅▆▇█"
SLACK = 0.05  # A (or kW) within which a load counts as at its limit, not over it
NAME_WIDTH = 12
LABEL_WIDTH = 11  # "32.0/32 A" right-aligned, room for "125.0/100 A"
FLAG_WIDTH = 4  # "full" / "OVER"
BUCKET_SECONDS = 10.0  # one sparkline column per 10 s: its peak (a breaker trips on peaks)
KEEP_BUCKETS = 360  # an hour of history per circuit


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _limit(value: float) -> str:
    return f"{value:g}"


def level_style(fraction: float) -> str:
    """Green under 80 % of the limit, yellow up to it, red over it."""
    if fraction > 1.0:
        return "bold red"
    if fraction >= 0.8:
        return "yellow"
    return "green"


def phase_bar(amount: float, limit: float | None, width: int, other: float = 0.0) -> Text:
    """``amount`` against ``limit`` in ``width`` cells (eighth blocks for the last
    one), after ``other`` (the building's other load, ``▒``) when there is one. Over
    the limit the whole bar is red and its last cell is ``!``, so it stays distinct
    without colour; no limit: an empty dim bar (the label says the amount)."""
    width = max(1, width)
    if limit is None or limit <= 0:
        return Text(HOLE * width, style="grey35")
    other = max(0.0, other)
    total = max(0.0, amount) + other
    fraction = total / limit
    if total > limit + SLACK:
        return Text(FULL * (width - 1) + "!", style="bold red")
    bar = Text()
    shared = 0
    if other > 0:
        shared = min(width, max(1, round(other / limit * width)))
        bar.append(OTHER * shared, style="blue")
    eighths = max(0, round(min(1.0, fraction) * width * 8) - shared * 8)
    whole, part = divmod(eighths, 8)
    whole = min(whole, width - shared)
    bar.append(FULL * whole, style=level_style(fraction))
    used = shared + whole
    if part and used < width:
        bar.append(EIGHTHS[part], style=level_style(fraction))
        used += 1
    bar.append(HOLE * (width - used), style="grey35")
    return bar


def amount_label(amount: float, limit: float | None, unit: str) -> Text:
    text = f"{amount:.1f}/{_limit(limit)} {unit}" if limit is not None else f"{amount:.1f} {unit}"
    fraction = amount / limit if limit else 0.0
    return Text(text.rjust(LABEL_WIDTH), style=level_style(fraction) if limit else "")


def flag(amount: float, limit: float | None) -> Text:
    """``OVER`` past the limit, ``full`` at it (the allocator fills limits exactly)."""
    if limit is None:
        return Text(" " * FLAG_WIDTH)
    if amount > limit + SLACK:
        return Text("OVER", style="bold white on red")
    if amount >= limit - SLACK:
        return Text("full", style="yellow")
    return Text(" " * FLAG_WIDTH)


def spark(levels: list[float | None], width: int) -> Text:
    """Levels as fractions of the limit (1.0 = at it), the last ``width`` of them: a
    block per level scaled to the limit, ``▁`` for nothing drawn, a space where there
    was no round yet, and a red ``█`` for a level over the limit."""
    out = Text()
    for level in levels[-width:] if width > 0 else []:
        if level is None:
            out.append(" ")
        elif level > 1.0 + 1e-9:
            out.append(FULL, style="bold red")
        else:
            index = round(max(0.0, level) * (len(SPARKS) - 1))
            out.append(SPARKS[index], style=level_style(level) if level > 0 else "grey35")
    return out


@dataclass(frozen=True, slots=True)
class InForce:
    """A circuit's limits this round as the breaker sees them: the limit in force per
    phase (configured, lowered by a schedule entry), the building's other load on each
    phase (an external signal, subtracted from what the chargers may share) and its
    state, the kW limit and the other load's share of it. Servers before the external
    limit send none of it: configured limits, no other load."""

    limit_amps: float | None
    scheduled: bool
    other: tuple[float, float, float]
    other_state: str | None  # live, stale, missing; None: no external signal
    limit_kw: float | None
    other_kw: float

    @classmethod
    def of(cls, load: dict[str, Any], circuit: dict[str, Any] | None = None) -> InForce:
        limit = _number(load.get("limit_amps"))
        if limit is None and circuit is not None and "limit_amps" not in load:
            limit = _number(circuit.get("limit_amps"))
        schedule = _number(load.get("schedule_amps"))
        scheduled = schedule is not None and (limit is None or schedule < limit)
        if scheduled:
            limit = schedule
        external = load.get("external_load") or {}
        values = [_number(a) or 0.0 for a in external.get("amps") or []][:3]
        values += [0.0] * (3 - len(values))
        limit_kw = _number(load.get("limit_kw"))
        effective_kw = _number(load.get("effective_limit_kw"))
        other_kw = 0.0
        if limit_kw is not None and effective_kw is not None and external:
            other_kw = max(0.0, limit_kw - effective_kw)
        return cls(
            limit_amps=limit,
            scheduled=scheduled,
            other=(values[0], values[1], values[2]),
            other_state=str(external["state"]) if external.get("state") else None,
            limit_kw=limit_kw,
            other_kw=other_kw,
        )


def load_level(load: dict[str, Any]) -> float | None:
    """A circuit's load as a fraction of its tightest limit: the most loaded phase
    (chargers plus the building's other load) against the limit in force per phase,
    the power against the kW limit."""
    force = InForce.of(load)
    levels = []
    amps = [_number(v) for v in load.get("amps") or []]
    totals = [a + o for a, o in zip(amps, force.other, strict=False) if a is not None]
    if totals and force.limit_amps:
        levels.append(max(totals) / force.limit_amps)
    kw = _number(load.get("kw"))
    if kw is not None and force.limit_kw:
        levels.append((kw + force.other_kw) / force.limit_kw)
    return max(levels) if levels else None


class LoadHistory:
    """Recent load per circuit, kept in the console from the rounds it sees (the
    ``load.allocation`` events and ``circuits.list`` snapshots): per ``BUCKET_SECONDS``
    the peak level. Between rounds the load stays what the last round allocated."""

    def __init__(self, bucket_seconds: float = BUCKET_SECONDS, keep: int = KEEP_BUCKETS) -> None:
        self.bucket_seconds = bucket_seconds
        self.keep = keep
        self._buckets: dict[str, deque[tuple[int, float]]] = {}
        self._seen: set[str] = set()  # computed_at of the rounds already counted

    def _index(self, moment: datetime) -> int:
        return int(moment.timestamp() // self.bucket_seconds)

    def add(self, live: dict[str, Any] | None, fallback: datetime) -> bool:
        """Count one round (once, however often it is seen). False: already counted
        or nothing to count."""
        if not live:
            return False
        stamp = str(live.get("computed_at") or "")
        if stamp and stamp in self._seen:
            return False
        if stamp:
            self._seen.add(stamp)
            if len(self._seen) > 4 * self.keep:
                self._seen = {stamp}
        moment = parse_time(stamp) or fallback
        index = self._index(moment)
        for load in live.get("loads") or []:
            level = load_level(load)
            name = load.get("circuit")
            if level is None or not isinstance(name, str):
                continue
            buckets = self._buckets.setdefault(name, deque(maxlen=self.keep))
            if buckets and buckets[-1][0] == index:
                buckets[-1] = (index, max(buckets[-1][1], level))
            elif not buckets or buckets[-1][0] < index:
                buckets.append((index, level))
        return True

    def series(self, circuit: str, now: datetime, count: int) -> list[float | None]:
        """The last ``count`` buckets up to ``now``, oldest first; None before the first
        round seen, the last known level carried over buckets without a round."""
        end = self._index(now)
        buckets = self._buckets.get(circuit)
        out: list[float | None] = []
        if not buckets:
            return [None] * count
        by_index = dict(buckets)
        current: float | None = None
        first = end - count + 1
        for index, level in buckets:
            if index < first:
                current = level
        for index in range(first, end + 1):
            if index in by_index:
                current = by_index[index]
                out.append(current)
            else:
                out.append(current)
        return out


@dataclass(frozen=True, slots=True)
class Layout:
    """Columns of a circuit line at a given width: name, phase, bar, label, flag, spark."""

    bar: int
    spark: int

    @classmethod
    def for_width(cls, width: int) -> Layout:
        fixed = NAME_WIDTH + 1 + 2 + 1 + 1 + LABEL_WIDTH + 1 + FLAG_WIDTH + 1
        room = max(12, width - fixed)
        spark = min(60, max(6, room // 4, room - 60))  # bars of at most 60 cells
        return cls(bar=max(6, min(60, room - spark)), spark=spark)


def _depths(circuits: list[dict[str, Any]]) -> dict[str, int]:
    parents = {str(c.get("name")): c.get("parent") for c in circuits}
    depth: dict[str, int] = {}
    for name in parents:
        level, seen, at = 0, {name}, parents.get(name)
        while isinstance(at, str) and at in parents and at not in seen:
            seen.add(at)
            level, at = level + 1, parents.get(at)
        depth[name] = level
    return depth


def _ordered(circuits: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Depth first: each circuit followed by its children (by name), like a tree."""
    names = {str(c.get("name")) for c in circuits}
    children: dict[str | None, list[dict[str, Any]]] = {}
    for c in circuits:
        parent = c.get("parent") if c.get("parent") in names else None
        children.setdefault(parent, []).append(c)
    out: list[dict[str, Any]] = []

    def walk(parent: str | None) -> None:
        for c in sorted(children.get(parent, []), key=lambda c: str(c.get("name"))):
            if c not in out:
                out.append(c)
                walk(str(c.get("name")))

    walk(None)
    return out + [c for c in circuits if c not in out]


def _span(seconds: float) -> str:
    """The sparkline's header: the time it covers."""
    return f"LAST {seconds / 60:.0f} MIN" if seconds >= 120 else f"LAST {seconds:.0f} S"


def _fit(text: str, width: int) -> str:
    if width <= 0:
        return ""
    return text if len(text) <= width else text[: max(0, width - 1)] + "…"


def circuit_lines(
    circuits: list[dict[str, Any]],
    live: dict[str, Any] | None,
    history: LoadHistory,
    now: datetime,
    width: int,
) -> list[Text]:
    """Three lines per circuit (L1, L2, L3: bar, amps/limit, full/OVER), a fourth for
    its power when it has a kW limit; the name (indented under its parent), its limits
    and a sparkline of its recent load (fraction of its tightest limit) on the left and
    right of the first lines."""
    if not circuits:
        return [Text(EMPTY, style="bold")]
    layout = Layout.for_width(width)
    loads = {str(x.get("circuit")): x for x in (live or {}).get("loads") or []}
    overloaded = set((live or {}).get("overloaded") or [])
    depth = _depths(circuits)
    by_name = {str(c.get("name")): c for c in circuits}
    forces = {name: InForce.of(load, by_name.get(name)) for name, load in loads.items()}
    external = any(f.other_state for f in forces.values())
    what = "LOAD (▒ other load, █ chargers)" if external else "LOAD (offered + counted)"
    header = Text(
        f"{'CIRCUIT':<{NAME_WIDTH}} PH {_fit(what, layout.bar):<{layout.bar}} "
        f"{'A / LIMIT':>{LABEL_WIDTH}} {'':<{FLAG_WIDTH}} "
        f"{_fit(_span(layout.spark * history.bucket_seconds), layout.spark)}",
        style="bold",
    )
    lines = [header]
    for circuit in _ordered(circuits):
        name = str(circuit.get("name"))
        indent = " " * min(4, depth.get(name, 0))
        load = loads.get(name)
        # The round's limits (in force: a schedule may lower them) over the tree's.
        force = forces.get(name) or InForce.of({}, circuit)
        limit_amps, limit_kw = force.limit_amps, force.limit_kw
        if load is None:
            limit_kw = _number(circuit.get("limit_kw"))
        limits = " ".join(
            part
            for part in (
                f"{_limit(limit_amps)} A" if limit_amps is not None else "",
                "sched" if force.scheduled else "",
                f"{_limit(limit_kw)} kW" if limit_kw is not None else "",
            )
            if part
        )
        third = Text("")
        if name in overloaded:
            third = Text(_fit(indent + " OVERLOADED", NAME_WIDTH), style="bold red")
        elif force.other_state:
            said = "other" if force.other_state == "live" else force.other_state
            third = Text(
                _fit(f"{indent} ▒{_limit(round(max(force.other), 1))} A {said}", NAME_WIDTH),
                style="blue" if force.other_state == "live" else "yellow",
            )
        left = [
            Text(_fit(indent + name, NAME_WIDTH), style="bold red" if name in overloaded else "b"),
            Text(_fit(indent + " " + limits, NAME_WIDTH), style="grey62"),
            third,
        ]
        amps = [_number(a) for a in (load or {}).get("amps") or []]
        for n, phase in enumerate(PHASES):
            line = Text()
            line.append_text(left[n])
            line.pad_right(NAME_WIDTH - line.cell_len)
            line.append(f" {phase} ")
            value = amps[n] if n < len(amps) else None
            if value is None:
                line.append(" " * layout.bar)
                line.append(" " + "-".rjust(LABEL_WIDTH) + " " + " " * FLAG_WIDTH)
            else:
                other = force.other[n]
                line.append_text(phase_bar(value, limit_amps, layout.bar, other))
                line.append(" ")
                line.append_text(amount_label(value + other, limit_amps, "A"))
                line.append(" ")
                line.append_text(flag(value + other, limit_amps))
            if n == 0:
                line.append(" ")
                line.append_text(spark(history.series(name, now, layout.spark), layout.spark))
            lines.append(line)
        kw = _number((load or {}).get("kw"))
        if limit_kw is not None and kw is not None:
            line = Text(" " * NAME_WIDTH + " kW ")
            line.append_text(phase_bar(kw, limit_kw, layout.bar, force.other_kw))
            line.append(" ")
            line.append_text(amount_label(kw + force.other_kw, limit_kw, "kW"))
            line.append(" ")
            line.append_text(flag(kw + force.other_kw, limit_kw))
            lines.append(line)
    return lines


def _amps(value: Any) -> str:
    number = _number(value)
    return "-" if number is None else f"{number:.1f}"


def session_state(session: dict[str, Any], ratings: dict[str, float]) -> tuple[str, str, str]:
    """(parked, why, style) of one session, like ``voltaro ctl circuits list``: the
    park reason and the limit that stopped it; capped at its draw (what it does not
    take goes to the others); a limit still on its way to the charger."""
    parked = session.get("parked")
    detail = str(session.get("detail") or "")
    if parked:
        return str(parked), detail, "bold yellow"
    cap = _number(session.get("cap_amps"))
    rating = ratings.get(str(session.get("charger_id")))
    draw = _number(session.get("draw_amps"))
    if cap is not None and rating is not None and draw is not None and cap < rating - SLACK:
        return "-", f"draws {draw:.1f} A: capped at {cap:.1f} A, rest shared", "cyan"
    accepted = _number(session.get("accepted_amps"))
    offered = _number(session.get("amps"))
    if offered is not None and accepted is not None and abs(accepted - offered) > SLACK:
        return "-", f"on its way (the charger is at {accepted:.1f} A)", ""
    return "-", detail, ""


SESSION_HEADER = ("CHARGER", "CONN", "OFFER A", "DRAWN A", "PARKED", "WHY")
SESSION_WIDTHS = (10, 4, 7, 7, 13)


def session_lines(
    live: dict[str, Any] | None, circuits: list[dict[str, Any]], width: int
) -> list[Text]:
    """One line per session, parked ones first: charger, connector, offered and drawn A
    (most loaded phase, from its Current.Import meter values), why it is parked (the
    reason, then the circuit and phase that is full) or capped."""
    sessions = list((live or {}).get("sessions") or [])
    ratings = {
        str(w.get("charger_id")): float(w["max_amps"])
        for c in circuits
        for w in c.get("chargers") or []
        if _number(w.get("max_amps")) is not None
    }
    why_width = max(8, width - sum(SESSION_WIDTHS) - len(SESSION_WIDTHS))
    widths = (*SESSION_WIDTHS, why_width)
    lines = [
        Text(
            " ".join(h.ljust(w) for h, w in zip(SESSION_HEADER, widths, strict=True)).rstrip(),
            style="bold",
        )
    ]
    if not sessions:
        lines.append(Text("no sessions on managed chargers", style="grey62"))
        return lines
    sessions.sort(
        key=lambda s: (not s.get("parked"), str(s.get("charger_id")), s.get("connector_id") or 0)
    )
    for s in sessions:
        parked, why, style = session_state(s, ratings)
        line = Text()
        line.append(_fit(str(s.get("charger_id")), 10).ljust(10) + " ")
        line.append(_fit(str(s.get("connector_id")), 4).ljust(4) + " ")
        line.append(_amps(s.get("amps")).rjust(7) + " ")
        line.append(_amps(s.get("draw_amps")).rjust(7) + " ")
        line.append(parked.ljust(13), style=style)
        line.append(" ")
        line.append(_fit(why, why_width), style=style)
        lines.append(line)
    return lines


REASONS = {
    "offline": "offline: counted at its fallback or last limit",
    "rejects-profiles": "refuses profiles: counted at its full rating",
}


def counted_lines(live: dict[str, Any] | None, width: int) -> list[Text]:
    """Chargers that do not follow a limit (offline, refusing profiles) and what each
    is counted at; circuits overloaded by them alone; sessions on no circuit."""
    live = live or {}
    lines: list[Text] = []
    for r in live.get("reserved") or []:
        phases = " ".join(str(p) for p in r.get("phases") or [])
        reason = str(r.get("reason"))
        text = (
            f"{_fit(str(r.get('charger_id')), 10):<10} {_amps(r.get('amps')):>5} A on "
            f"{phases or '-'}: {REASONS.get(reason, reason)}"
        )
        lines.append(Text(_fit(text, width), style="yellow"))
    for name in live.get("overloaded") or []:
        text = f"OVERLOADED {name}: offline and refusing chargers alone exceed its limit; "
        text += "nothing is offered there"
        lines.append(Text(_fit(text, width), style="bold white on red"))
    unmanaged = [
        f"{u.get('charger_id')} #{u.get('connector_id')}" for u in live.get("unmanaged") or []
    ]
    if unmanaged:
        lines.append(Text(_fit("not managed (on no circuit): " + ", ".join(unmanaged), width)))
    return lines


def summary_line(
    circuits: list[dict[str, Any]], live: dict[str, Any] | None, now: datetime
) -> Text:
    """One line at 80 columns: OVERLOADED first when a circuit is, the policy, when the
    latest round ran, sessions, parked, chargers not obeying limits."""
    if not circuits:
        return Text("")
    if not live:
        return Text(WAITING, style="grey62")
    sessions = live.get("sessions") or []
    parked = sum(1 for s in sessions if s.get("parked"))
    at = parse_time(live.get("computed_at"))
    age = f"{max(0, int((now - at).total_seconds()))}s ago" if at else "?"
    text = Text()
    if live.get("overloaded"):
        text.append("OVERLOADED", style="bold white on red")
        text.append(" · ")
    text.append(
        f"{live.get('policy', '?')} · round {at.strftime('%H:%M:%S') if at else '?'} ({age})"
        f" · {len(sessions)} session{'s' if len(sessions) != 1 else ''}"
    )
    if parked:
        text.append(f" · {parked} parked", style="bold yellow")
    counted = len(live.get("reserved") or [])
    if counted:
        text.append(f" · {counted} not obeying", style="yellow")
    return text
