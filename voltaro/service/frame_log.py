"""The raw frame log: every frame in and out, buffered in memory, written in batches,
published live to consoles.

It is diagnostics, never billing data, so it is the one writer that gives way and the
only thing ever shed (design, "writers have priorities"; issue 21 item 1):

- it is batched and delayed: a flush waits (up to ``MAX_DEFER``) while billing or status
  writes hold or wait for the database;
- it holds the database briefly: it writes, and evicts, in small units of work and gives
  way again between them, so a charger's write that arrives meanwhile waits for one
  slice, not for the whole flush or sweep (issue 14);
- per charger, a rate budget (frames per second) and a byte budget: beyond the rate a
  frame is dropped, beyond the bytes it is stored truncated with a marker (issue 11.5);
- globally, the buffer is bounded and the table holds at most ``frame_log_max_rows``
  rows, the oldest evicted first;
- every field is made storable before it is stored: lone surrogates and NUL become
  U+FFFD, control characters in the action and id are escaped, lengths are capped
  (issue 11.1). A batch that still fails is split until the bad row is found; that row
  is stored escaped to ASCII, or skipped (issue 11.3);
- nothing raised while flushing reaches the root nursery: the loop logs, counts and
  goes on (issue 11.1).

Everything shed is counted in :class:`FrameLogStats` and summarised in the log at most
once a minute.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import trio

from voltaro.background import LoopGuard
from voltaro.control.wire import Event
from voltaro.domain.model import FrameRecord
from voltaro.domain.secrets import redact_frame
from voltaro.domain.timestamps import format_utc
from voltaro.settings import Settings
from voltaro.store import frames
from voltaro.store.db import Database
from voltaro.store.errors import is_transient

log = logging.getLogger(__name__)

Publish = Callable[[str, dict[str, Any]], None]

# Rows per unit of work. On SQLite (one writer) every charger message waiting to be
# stored (MeterValues are answered after their commit) waits behind the unit holding the
# writer, whatever arrives after give-way: 500 rows held it for 14-37 ms twice a second
# at 1,000 frames/s, latency spikes of 30-55 ms (issue 14). Measured on an SQLite file
# (WAL, synchronous=FULL, 658-character MeterValues frames, 100,000+ rows in the table;
# median per unit with its commit): 50 rows 2.2-2.3 ms, 100 rows 3.7-4.0 ms, 200 rows
# 7.3-7.6 ms, 500 rows 23-26 ms. Per row that is 37-40 us at 100-200 rows and 47-53 us
# at 500: smaller slices cost no throughput, so the slice is small whether or not others
# wait (work can arrive during any slice). Below 100 the commit (~0.8 ms) starts to show
# (45 us per row at 50). Occasional slower units (p90 17-23 ms) were SQLite's WAL
# checkpoints, run then by whichever commit crossed the threshold (since then beside the
# writer: voltaro.store.wal_checkpoints).
SLICE = 100
FLUSH_AT = 500  # frames buffered that wake the writer before its next second
# Rows per eviction delete, measured likewise (oldest rows beyond the cap, median per
# unit): 20,000 rows 180-280 ms, 2,000 39-46 ms, 1,000 28-35 ms, 500 7-9 ms, 200 4-6 ms.
# 500 is a few ms at the lowest cost per row of the small chunks (15 us; 26 us at 200).
EVICT_CHUNK = 500
MAX_DEFER = 5.0  # seconds a flush gives way to other writers before it writes anyway
EVICT_EVERY = 30.0  # seconds between global size-cap sweeps
SUMMARY_EVERY = 60.0  # at most one "frames shed" line per minute
TRUNCATED_KEEP = 256  # characters kept of a frame beyond its charger's byte budget
MAX_ACTION = 64  # the column widths of the frames table
MAX_UNIQUE_ID = 64
MAX_TRACKED_CHARGERS = 100_000

# Characters a payload keeps as they are: TAB, LF, CR (pretty-printed JSON). Everything
# else below 0x20, DEL, C1, lone surrogates, line/paragraph separators, bidi controls:
_DISPLAY_UNSAFE = "\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff"
_PAYLOAD_UNSAFE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f" + _DISPLAY_UNSAFE + "]")
_FIELD_UNSAFE = re.compile("[\x00-\x1f" + _DISPLAY_UNSAFE + "]")


def _escape(match: re.Match[str]) -> str:
    ch = match.group()
    return "\ufffd" if "\ud800" <= ch <= "\udfff" or ch == "\x00" else f"\\u{ord(ch):04x}"


# Printable ASCII (0x20-0x7e) holds none of the characters the patterns above escape:
# ``isascii`` costs nothing and ``isprintable`` is one C loop, cheaper than a regex
# substitution over every frame (issue 14). Anything else takes the patterns.


def storable_payload(text: str) -> str:
    if text.isascii() and text.isprintable():
        return text
    return _PAYLOAD_UNSAFE.sub(_escape, text)


def storable_field(text: str | None, limit: int) -> str | None:
    if text is None:
        return None
    if text.isascii() and text.isprintable():
        return text[:limit]
    return _FIELD_UNSAFE.sub(_escape, text)[:limit]


def storable(frame: FrameRecord) -> FrameRecord:
    """The frame with its secrets hidden (voltaro.domain.secrets: an AuthorizationKey
    in ChangeConfiguration.req or GetConfiguration.conf) and every text field safe for
    any database, terminal and log. Every frame passes here before it is buffered,
    stored or published (issue 15)."""
    charger_id = storable_field(frame.charger_id, 255) or ""
    payload = storable_payload(redact_frame(frame.payload))
    action = storable_field(frame.action, MAX_ACTION)
    unique_id = storable_field(frame.unique_id, MAX_UNIQUE_ID)
    if (
        charger_id is frame.charger_id
        and payload is frame.payload
        and action is frame.action
        and unique_id is frame.unique_id
    ):
        return frame  # the common case: nothing to change, no copy (issue 14)
    return dataclasses.replace(
        frame, charger_id=charger_id, payload=payload, action=action, unique_id=unique_id
    )


def ascii_escaped(frame: FrameRecord) -> FrameRecord:
    """Last resort for a row the database refused: plain ASCII, nothing can be wrong."""

    def ascii_text(text: str) -> str:
        return text.encode("ascii", "backslashreplace").decode("ascii")

    return dataclasses.replace(
        frame,
        payload=ascii_text(frame.payload),
        action=ascii_text(frame.action)[:MAX_ACTION] if frame.action else None,
        unique_id=ascii_text(frame.unique_id)[:MAX_UNIQUE_ID] if frame.unique_id else None,
    )


@dataclass(slots=True)
class FrameLogStats:
    """What the frame log did not store as received (process lifetime counts)."""

    stored: int = 0
    dropped_rate: int = 0  # over a charger's frames-per-second budget
    truncated: int = 0  # over a charger's byte budget: stored truncated with a marker
    shed_buffer: int = 0  # the in-memory buffer was full (database slow or down)
    rows_escaped: int = 0  # refused by the database, stored escaped to ASCII
    rows_skipped: int = 0  # refused even escaped
    evicted: int = 0  # oldest rows removed by the global size cap
    errors: int = 0  # unexpected failures of a flush (logged with a traceback)

    def shed(self) -> int:
        return self.dropped_rate + self.shed_buffer + self.rows_skipped


@dataclass(slots=True)
class _Bucket:
    frames: float
    bytes: float
    at: float


class FrameBudget:
    """Per-charger token buckets: ``rate`` frames/s and ``byte_rate`` bytes/s, each with
    ``burst_seconds`` worth of burst."""

    def __init__(self, rate: float, byte_rate: float, burst_seconds: float = 10.0) -> None:
        self._rate = rate
        self._byte_rate = byte_rate
        self._max_frames = max(1.0, rate * burst_seconds)
        self._max_bytes = max(1024.0, byte_rate * burst_seconds)
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    def admit(self, charger_id: str, size: int, now: float) -> str:
        """``"store"``, ``"truncate"`` or ``"drop"`` for one frame of ``size`` bytes."""
        if self._rate <= 0:
            return "store"
        bucket = self._buckets.get(charger_id)
        if bucket is None:
            bucket = _Bucket(self._max_frames, self._max_bytes, now)
            self._buckets[charger_id] = bucket
            while len(self._buckets) > MAX_TRACKED_CHARGERS:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(charger_id)
            elapsed = max(0.0, now - bucket.at)
            bucket.frames = min(self._max_frames, bucket.frames + elapsed * self._rate)
            bucket.bytes = min(self._max_bytes, bucket.bytes + elapsed * self._byte_rate)
            bucket.at = now
        if bucket.frames < 1:
            return "drop"
        bucket.frames -= 1
        if self._byte_rate > 0 and bucket.bytes < size:
            bucket.bytes -= min(size, TRUNCATED_KEEP)
            return "truncate"
        bucket.bytes -= size
        return "store"


def truncated(frame: FrameRecord) -> FrameRecord:
    size = len(frame.payload)
    kept = frame.payload[:TRUNCATED_KEEP]
    marker = f"...[frame log: truncated, {size - len(kept)} of {size} characters not kept]"
    return dataclasses.replace(frame, payload=kept + marker)


@dataclasses.dataclass
class _Done:
    """Rows of a slice stored, escaped or skipped so far."""

    rows: int = 0


def _transient(exc: BaseException) -> bool:
    """The database is down or busy (keep the batch), not refusing these rows."""
    # Database.run already classified it (voltaro.store.errors): one rule everywhere.
    return is_transient(exc)


class FrameSink:
    """The raw frame log: buffered in memory, written in batches, published live."""

    def __init__(
        self,
        *,
        db: Database,
        settings: Settings,
        publish: Publish,
        wants_frames: Callable[[], bool] | None = None,
        max_buffer: int = 50_000,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self._db = db
        self._enabled = settings.frame_log
        self._publish = publish
        # Whether anyone takes frame events (EventHub.wants_frames): usually nobody, and
        # the event (a dict and a formatted timestamp per frame) is then not built.
        self._wants_frames = wants_frames
        self._buffer: list[FrameRecord] = []
        self._max_buffer = max_buffer
        self._max_rows = settings.frame_log_max_rows
        self._budget = FrameBudget(settings.frame_log_rate, settings.frame_log_bytes_per_second)
        self._clock = clock or trio.current_time
        self._wake = trio.Event()
        self._last_evict = -EVICT_EVERY
        self._stored_at_evict = 0
        self._guard = LoopGuard("frame log", log)
        self._last_summary = 0.0
        self._shed_at_summary = 0
        self.stats = FrameLogStats()

    @property
    def dropped(self) -> int:
        return self.stats.shed()

    @property
    def queued(self) -> int:
        """Frames in memory, not yet written."""
        return len(self._buffer)

    def record(self, frame: FrameRecord) -> None:
        frame = storable(frame)
        if self._wants_frames is None or self._wants_frames():
            self._publish(
                Event.FRAME,
                {
                    "charger_id": frame.charger_id,
                    "direction": frame.direction,
                    "action": frame.action,
                    "unique_id": frame.unique_id,
                    "payload": frame.payload,
                    "at": format_utc(frame.at),
                },
            )
        if not self._enabled:
            return
        verdict = self._budget.admit(frame.charger_id, len(frame.payload), self._clock())
        if verdict == "drop":
            self.stats.dropped_rate += 1
            return
        if verdict == "truncate":
            self.stats.truncated += 1
            frame = truncated(frame)
        if len(self._buffer) >= self._max_buffer:
            self.stats.shed_buffer += 1  # never let diagnostics grow without bound
            return
        self._buffer.append(frame)
        if len(self._buffer) >= FLUSH_AT:
            self._wake.set()

    # --- writing -------------------------------------------------------------------

    async def _give_way(self, deadline: float) -> None:
        """Wait while other writers use or wait for the database, until ``deadline``
        (one per flush or sweep: ``MAX_DEFER`` bounds the whole of it, not each of its
        slices, so a busy database still takes the frame log's rows at a steady rate).

        Woken each time a unit of work gives its token back (no polling)."""
        limiter = self._db.limiter
        with trio.move_on_at(deadline):
            while True:
                stats = limiter.statistics()
                if stats.tasks_waiting == 0 and stats.borrowed_tokens < stats.total_tokens:
                    return
                await self._db.wait_released()

    async def flush(self) -> None:
        """Write what is buffered, ``SLICE`` rows per unit of work, giving way before
        each; a failure is logged and counted, never raised."""
        deadline = trio.current_time() + MAX_DEFER
        while self._buffer:
            # Give way before the slice leaves the buffer: cancelled here (shutdown), the
            # frames are still there for the final flush.
            await self._give_way(deadline)
            batch = self._buffer[:SLICE]
            del self._buffer[:SLICE]  # a move in place, not a copy of the rest per slice
            done = _Done()
            try:
                await self._write(batch, done)
            except trio.Cancelled:
                # Cancelled while waiting for a worker slot (a unit in the thread is
                # never abandoned, so nothing of that unit was written): keep what the
                # slice's earlier units did not store (a refused slice is written in
                # halves, in order).
                self._requeue(batch[done.rows :])
                raise
            except Exception as exc:
                if _transient(exc):
                    self._requeue(batch[done.rows :])
                    if not self._db.health.absorb("frame-log batches deferred"):
                        # Every frame still buffered waits, not only this slice's.
                        log.warning(
                            "frame log: %d frames not written yet: %s", len(self._buffer), exc
                        )
                    return
                self.stats.errors += 1
                self._guard.failed(exc, f"writing {len(batch)} frames (they are lost)")
        self._summarise()

    def _requeue(self, batch: list[FrameRecord]) -> None:
        room = self._max_buffer - len(self._buffer)
        keep = batch[-room:] if room > 0 else []
        self.stats.shed_buffer += len(batch) - len(keep)
        self._buffer = keep + self._buffer

    async def _write(self, batch: Sequence[FrameRecord], done: _Done) -> None:
        """Write ``batch``; if the database refuses it, split it until the bad rows are
        found and store those escaped (or skip them). ``done`` counts the rows dealt
        with, always the batch's first ones: what an interruption must not write again."""
        try:
            await self._db.run(frames.append_frames, batch)
            self.stats.stored += len(batch)
            done.rows += len(batch)
            return
        except Exception as exc:
            if _transient(exc):
                raise
            if len(batch) > 1:
                middle = len(batch) // 2
                await self._write(batch[:middle], done)
                await self._write(batch[middle:], done)
                return
            first_error = exc
        row = ascii_escaped(batch[0])
        try:
            await self._db.run(frames.append_frames, [row])
            done.rows += 1
            self.stats.rows_escaped += 1
            log.warning(
                "frame log: charger=%s frame stored escaped (refused as received: %s)",
                row.charger_id,
                type(first_error).__name__,
            )
        except Exception as exc:
            if _transient(exc):
                raise
            done.rows += 1
            self.stats.rows_skipped += 1
            log.warning(
                "frame log: charger=%s frame skipped (refused even escaped: %s)",
                row.charger_id,
                type(exc).__name__,
            )

    async def evict(self) -> None:
        """Keep at most ``frame_log_max_rows`` rows, the oldest removed first, in units
        of ``EVICT_CHUNK`` rows, giving way before each (a sweep may remove a tenth of
        the cap: 200,000 rows by default)."""
        if self._max_rows <= 0:
            return
        deadline = trio.current_time() + MAX_DEFER
        while True:
            await self._give_way(deadline)
            removed = await self._db.run(frames.evict_oldest, self._max_rows, EVICT_CHUNK)
            self.stats.evicted += removed
            if removed < EVICT_CHUNK:
                return

    def _summarise(self) -> None:
        shed = self.stats.shed()
        now = self._clock()
        if shed == self._shed_at_summary or now - self._last_summary < SUMMARY_EVERY:
            return
        log.warning(
            "frame log: %d frames shed in the last period (totals: %s)",
            shed - self._shed_at_summary,
            ", ".join(f"{k}={v}" for k, v in dataclasses.asdict(self.stats).items()),
        )
        self._shed_at_summary, self._last_summary = shed, now

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        try:
            while True:
                with trio.move_on_after(1.0):
                    await self._wake.wait()
                self._wake = trio.Event()
                await self._cycle()
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(5.0):
                await self.flush()

    def _evict_due(self) -> bool:
        """Every ``EVICT_EVERY`` seconds, and whenever a tenth of the cap was written
        since the last sweep (a flood must not outgrow the cap for half a minute)."""
        if self._clock() - self._last_evict >= EVICT_EVERY:
            return True
        written = self.stats.stored - self._stored_at_evict
        return self._max_rows > 0 and written >= max(1, self._max_rows // 10)

    async def _cycle(self) -> None:
        # The one task of the frame log: whatever goes wrong, log it and keep going.
        try:
            await self.flush()
            if self._evict_due():
                self._last_evict, self._stored_at_evict = self._clock(), self.stats.stored
                await self.evict()
            self._guard.succeeded()
        except Exception as exc:
            self.stats.errors += 1
            await self._guard.after_failure(exc, "writing or evicting frames")
