"""PostgreSQL LISTEN/NOTIFY under trio, for several nodes on one database (issue 18).

One :class:`PgListener` per node holds one autocommit psycopg connection that LISTENs on
every channel subscribed before it starts, and hands each notification to the
subscribers of its channel through bounded trio memory channels. It needs no thread:
trio waits until the socket is readable, then psycopg's libpq wrapper reads what is there
without blocking (``consume_input`` / ``notifies``; scale-and-security A2 measured it).

NOTIFY is at-most-once: a notification sent while a listener is disconnected is lost, and
a subscriber that does not keep up loses what does not fit in its buffer. Either way the
subscriber is told with a :class:`Notification` whose ``payload`` is None ("resync"): it
rereads the tables the notifications were about. Notifications only wake readers; the
truth stays in tables (routed_commands, cluster_events, charger_owners).

Notifications are sent with :func:`notify` inside a unit of work: PostgreSQL delivers them
when that transaction commits, and never if it rolls back. Keep those transactions short:
a committing transaction that issued a NOTIFY takes a global lock (A2, "Known scaling
ceiling").
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass, field
from typing import Any

import psycopg
import trio
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

log = logging.getLogger(__name__)

# PostgreSQL refuses a NOTIFY payload of 8000 bytes or more; leave room for the rest.
MAX_PAYLOAD_BYTES = 7000

# libpq keepalives, so that a dead database or a cut network is noticed within seconds
# instead of the kernel's two hours (A2, "Operational notes").
_KEEPALIVES: dict[str, Any] = {
    "keepalives": 1,
    "keepalives_idle": 5,
    "keepalives_interval": 2,
    "keepalives_count": 3,
    "tcp_user_timeout": 15000,
}


@dataclass(frozen=True, slots=True)
class Notification:
    """One notification. ``payload`` None means "resync": notifications may have been
    missed (the listener reconnected, or this subscriber's buffer was full)."""

    channel: str
    payload: str | None


def channel_name(kind: str, node_id: str | None = None) -> str:
    """A channel name PostgreSQL accepts as a plain identifier: ``voltaro_<kind>`` or
    ``voltaro_<kind>_<node>``, lower case, other characters as ``_``, at most 63 bytes."""
    raw = f"voltaro_{kind}" if node_id is None else f"voltaro_{kind}_{node_id}"
    name = re.sub(r"[^a-z0-9_]", "_", raw.lower())
    if len(name) > 63:
        raise ValueError(f"channel name too long: {name!r}")
    return name


def notify(session: Session, channel: str, payload: str) -> None:
    """NOTIFY ``channel`` with ``payload`` when ``session``'s transaction commits."""
    if len(payload.encode()) > MAX_PAYLOAD_BYTES:
        raise ValueError(
            f"NOTIFY payload of {len(payload.encode())} bytes (at most {MAX_PAYLOAD_BYTES}): "
            "store the data in a table and notify its id"
        )
    session.connection().execute(
        text("SELECT pg_notify(:channel, :payload)"), {"channel": channel, "payload": payload}
    )


def libpq_url(database_url: str) -> str:
    """A SQLAlchemy URL (``postgresql+psycopg://...``) as libpq takes it."""
    url = make_url(database_url).set(drivername="postgresql")
    return url.render_as_string(hide_password=False)


@dataclass(eq=False)
class _Subscriber:
    send: trio.MemorySendChannel[Notification]
    overflowed: bool = False


@dataclass(eq=False)
class PgListener:
    """LISTEN on a set of channels and deliver their notifications (see the module)."""

    database_url: str
    connect_timeout: float = 5.0
    reconnect_delay: float = 1.0
    # Shown in pg_stat_activity: which node's LISTEN connection a backend is.
    application_name: str = "voltaro listen"
    _subscribers: dict[str, list[_Subscriber]] = field(default_factory=dict)
    _connected: bool = False
    _started: bool = False
    connects: int = 0  # connections made (the first one included), for status and tests

    def subscribe(
        self, channel: str, buffer: int = 1000
    ) -> trio.MemoryReceiveChannel[Notification]:
        """Receive ``channel``'s notifications. Call before :meth:`run` starts."""
        if buffer < 2:
            raise ValueError("a subscriber's buffer holds at least 2 (one is for a resync)")
        if self._started:
            raise RuntimeError("subscribe before the listener runs")
        send, receive = trio.open_memory_channel[Notification](buffer)
        self._subscribers.setdefault(channel, []).append(_Subscriber(send))
        return receive

    @property
    def connected(self) -> bool:
        return self._connected

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Listen until cancelled. Started once the first LISTENs are in place; after
        that, a lost connection is made again (every ``reconnect_delay`` seconds) and
        every subscriber gets a resync once it is back."""
        self._started = True
        started = False
        try:
            while True:
                try:
                    conn = await trio.to_thread.run_sync(self._connect, abandon_on_cancel=True)
                except psycopg.Error as exc:
                    if not started:
                        raise
                    log.warning("LISTEN connection to the database failed: %s", _first_line(exc))
                    await trio.sleep(self.reconnect_delay)
                    continue
                self.connects += 1
                try:
                    self._connected = True
                    if started:
                        log.info("LISTEN connection to the database is back")
                        self._resync_all()
                    else:
                        started = True
                        task_status.started()
                    await self._read(conn)
                except (psycopg.Error, OSError) as exc:
                    log.warning("LISTEN connection to the database lost: %s", _first_line(exc))
                finally:
                    self._connected = False
                    with trio.CancelScope(shield=True):
                        await trio.to_thread.run_sync(_close_quietly, conn)
                self._resync_all()
                await trio.sleep(self.reconnect_delay)
        finally:
            for subscribers in self._subscribers.values():
                for subscriber in subscribers:
                    subscriber.send.close()

    def _connect(self) -> psycopg.Connection[Any]:
        conn = psycopg.connect(
            libpq_url(self.database_url),
            autocommit=True,  # a LISTEN connection must never sit idle in a transaction
            connect_timeout=max(1, math.ceil(self.connect_timeout)),
            application_name=self.application_name,
            **_KEEPALIVES,
        )
        try:
            for channel in self._subscribers:
                conn.execute(f'LISTEN "{channel}"')  # names come from channel_name()
        except BaseException:
            conn.close()
            raise
        return conn

    async def _read(self, conn: psycopg.Connection[Any]) -> None:
        pgconn = conn.pgconn
        while True:
            await trio.lowlevel.wait_readable(pgconn.socket)
            pgconn.consume_input()  # raises psycopg.OperationalError when the link is gone
            if pgconn.status != psycopg.pq.ConnStatus.OK:
                raise psycopg.OperationalError("the LISTEN connection is closed")
            while (raw := pgconn.notifies()) is not None:
                self._deliver(raw.relname.decode(), raw.extra.decode())

    def _deliver(self, channel: str, payload: str) -> None:
        for subscriber in self._subscribers.get(channel, ()):
            _offer(subscriber, Notification(channel, payload))

    def _resync_all(self) -> None:
        for channel, subscribers in self._subscribers.items():
            for subscriber in subscribers:
                _offer(subscriber, Notification(channel, None))


def _offer(subscriber: _Subscriber, note: Notification) -> None:
    """Queue ``note`` for one subscriber without waiting; never a silent gap.

    The last slot of a buffer is kept for a resync: when only one is left, the resync
    takes it instead of ``note``, and everything after is dropped until the subscriber
    has read up to it (its buffer is empty again), since rereading the tables after the
    resync covers what was dropped before it was read."""
    stats = subscriber.send.statistics()
    used, size = stats.current_buffer_used, stats.max_buffer_size
    if subscriber.overflowed:
        if used > 0:
            return  # the resync still waiting in its buffer covers this one
        subscriber.overflowed = False
    if note.payload is not None and used >= size - 1:
        note = Notification(note.channel, None)
        subscriber.overflowed = True
    try:
        subscriber.send.send_nowait(note)
    except trio.WouldBlock:
        subscriber.overflowed = True  # full, and its last entry is a resync
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass  # that subscriber is gone; the others still get theirs


def _close_quietly(conn: psycopg.Connection[Any]) -> None:
    try:
        conn.close()
    except psycopg.Error:
        pass


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else exc.__class__.__name__


__all__ = [
    "MAX_PAYLOAD_BYTES",
    "Notification",
    "PgListener",
    "channel_name",
    "libpq_url",
    "notify",
]
