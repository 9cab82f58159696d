"""The event hub: fans server events out to consoles without ever slowing the OCPP side.

Each subscriber has a bounded queue. ``publish`` never blocks: when a subscriber's queue
is full its events are dropped and it is marked as overflowed; the next thing it
receives is a resync marker (re-read the state, then carry on). A console that cannot
keep up loses its live feed, never a charger its answer.

Several nodes (issue 18, voltaro/service/cluster_events.py): what this node publishes is
also handed to ``export`` (the event outbox); what other nodes published comes back
through :meth:`EventHub.publish_remote` and reaches only subscribers that asked for
remote events (consoles), never the services that act on events (they would act on
chargers another node serves), never ``tap`` (each node counts its own) and never
``export`` again.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import trio

from voltaro.control.wire import Event, event_matches
from voltaro.domain.timestamps import format_utc, utc_now

RESYNC = "resync"


@dataclass(frozen=True, slots=True)
class HubEvent:
    seq: int
    name: str
    at: str
    data: dict[str, Any]
    node: str | None = None  # the node that published it, when another node did


@dataclass(frozen=True, slots=True)
class HubStatistics:
    subscribers: int
    published: int
    dropped: int


class Subscription:
    def __init__(
        self,
        hub: EventHub,
        size: int,
        frames: bool,
        charger_id: str | None = None,
        kinds: tuple[str, ...] = (),
        remote: bool = False,
    ) -> None:
        self._hub = hub
        self.frames = frames
        self.remote = remote  # also the events other nodes published (consoles)
        # A filter (ctl events --charger/--kind): what it excludes never takes queue
        # room, so a narrow subscriber does not resync because of others' traffic.
        self.charger_id = charger_id
        self.kinds = kinds
        self._send, self._receive = trio.open_memory_channel[HubEvent | str](size)
        self.overflowed = False

    def offer(self, event: HubEvent) -> bool:
        if self.overflowed:
            return False
        try:
            self._send.send_nowait(event)
            return True
        except trio.WouldBlock:
            self.overflowed = True
            return False

    def resync(self) -> None:
        """Tell this subscriber to re-read the state after what is queued (events were
        lost before they reached this hub)."""
        if self.overflowed:
            return  # it gets its RESYNC already
        try:
            self._send.send_nowait(RESYNC)
        except trio.WouldBlock:
            self.overflowed = True

    async def receive(self) -> HubEvent | str:
        """The next event, or RESYNC after events were dropped for this subscriber."""
        if self.overflowed:
            # Drain what is queued: it is stale now; the client re-reads the state.
            while True:
                try:
                    self._receive.receive_nowait()
                except trio.WouldBlock:
                    break
            self.overflowed = False
            return RESYNC
        return await self._receive.receive()


class EventHub:
    def __init__(self, queue_size: int = 1024) -> None:
        self._queue_size = queue_size
        self._subscribers: set[Subscription] = set()
        self._frame_subscribers = 0  # of them, those that take raw frames
        self._seq = itertools.count(1)
        self._published = 0
        self._dropped = 0
        # Sees every event but raw frames, subscribers or not (the metrics count them:
        # issue 19). Sync and cheap, like publish itself.
        self.tap: Callable[[str, dict[str, Any]], None] | None = None
        # Sees every event this node publishes but raw frames (the cluster event outbox;
        # None on a single node). Sync and cheap: it only queues.
        self.export: Callable[[str, dict[str, Any]], None] | None = None

    def publish(self, event: Event | str, data: dict[str, Any]) -> None:
        """Offer an event to every subscriber. Sync and non-blocking by design."""
        name = str(event)
        is_frame = name == Event.FRAME
        if self.tap is not None and not is_frame:  # frames: counted by the protocol layer
            self.tap(name, data)
        if self.export is not None and not is_frame:
            self.export(name, data)
        # Built only once a subscriber takes it: a server always has a filtered
        # subscriber (the local-list service follows connects and boots), and the
        # timestamp alone costs more than the rest of a publish, per frame and per
        # event of every charger message (the hot path of issue 14).
        item: HubEvent | None = None
        for sub in self._subscribers:
            if is_frame and not sub.frames:
                continue
            if (sub.charger_id is not None or sub.kinds) and not event_matches(
                name, data, sub.charger_id, sub.kinds
            ):
                continue
            if item is None:
                item = HubEvent(seq=next(self._seq), name=name, at=format_utc(utc_now()), data=data)
                self._published += 1
            if not sub.offer(item):
                self._dropped += 1

    def publish_lazy(self, event: Event | str, build: Callable[[], dict[str, Any]]) -> None:
        """``publish(event, build())``, but ``build`` runs only when the event would go
        anywhere: to a subscriber whose kinds admit it (a charger filter needs the data
        to decide, so such a subscriber counts) or, on several nodes, to the export (other
        nodes' consoles). For an event costly to build and usually unread: chargers.seen
        formats a time per charger, ~19 ms on the trio thread for 1,000 chargers at
        load (issue 14), while a server without a console has only subscribers that
        filter other kinds (the local-list service, the load manager).

        Unbuilt, it is still counted by ``tap`` (the metrics count every event, read or
        not), with empty data: the tally reads the data of transaction.stopped only.
        """
        name = str(event)
        if self.export is None and not any(
            event_matches(name, {}, None, sub.kinds) for sub in self._subscribers
        ):
            if self.tap is not None:
                self.tap(name, {})
            return
        self.publish(name, build())

    def publish_remote(self, name: str, at: str, data: dict[str, Any], node: str) -> None:
        """An event another node published (read from the outbox): offered only to the
        subscribers that asked for remote events; not tapped, not exported again."""
        item: HubEvent | None = None
        for sub in self._subscribers:
            if not sub.remote:
                continue
            if (sub.charger_id is not None or sub.kinds) and not event_matches(
                name, data, sub.charger_id, sub.kinds
            ):
                continue
            if item is None:
                item = HubEvent(seq=next(self._seq), name=name, at=at, data=data, node=node)
                self._published += 1
            if not sub.offer(item):
                self._dropped += 1

    def wants_frames(self) -> bool:
        """Whether any subscriber takes raw frames (a console watching them): when none
        does, a frame event would go nowhere, and the frame log need not build it."""
        return self._frame_subscribers > 0

    def wants_remote(self) -> bool:
        """Whether any subscriber takes other nodes' events (a console is attached)."""
        return any(sub.remote for sub in self._subscribers)

    def resync_remote(self) -> None:
        """Events of other nodes were lost on their way here: every subscriber to remote
        events gets a RESYNC after what it has queued."""
        for sub in self._subscribers:
            if sub.remote:
                sub.resync()

    @asynccontextmanager
    async def subscribe(
        self,
        *,
        frames: bool = False,
        charger_id: str | None = None,
        kinds: tuple[str, ...] = (),
        remote: bool = False,
    ) -> AsyncIterator[Subscription]:
        """``remote``: also the events of chargers on other nodes (consoles; issue 18)."""
        sub = Subscription(self, self._queue_size, frames, charger_id, kinds, remote)
        self._subscribers.add(sub)
        self._frame_subscribers += frames
        try:
            yield sub
        finally:
            self._subscribers.discard(sub)
            self._frame_subscribers -= frames

    def statistics(self) -> HubStatistics:
        return HubStatistics(
            subscribers=len(self._subscribers), published=self._published, dropped=self._dropped
        )
