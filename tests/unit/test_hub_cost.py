"""What the event hub costs per charger message when nobody wants the event.

Every charger message publishes its two frames and usually an event (meter.values,
connector.status). Since issue 16 a server always has one subscriber (the local-list
service follows charger.connected and charger.boot), so "no subscribers: return" no
longer protects the hot path: an event nobody takes must still cost no timestamp
formatting and no HubEvent (measured: ~9 us each, three per MeterValues, on a 2-core
box at load 11, against ~2 us without a subscriber).
"""

from __future__ import annotations

from datetime import datetime

import pytest
import trio

from voltaro.service import hub as hub_module
from voltaro.service.hub import EventHub, HubEvent


async def test_an_event_no_subscriber_takes_is_not_built(monkeypatch: pytest.MonkeyPatch) -> None:
    stamped: list[datetime] = []
    real = hub_module.format_utc

    def counting(moment: datetime) -> str:
        stamped.append(moment)
        return real(moment)

    monkeypatch.setattr(hub_module, "format_utc", counting)
    hub = EventHub(16)
    async with hub.subscribe(kinds=("charger.connected", "charger.boot")) as follower:
        for _ in range(100):
            hub.publish("frame", {"charger_id": "CP-1", "payload": "[2]"})
            hub.publish("meter.values", {"charger_id": "CP-1"})
        assert stamped == []
        assert hub.statistics().published == 0
        hub.publish("charger.boot", {"charger_id": "CP-1", "status": "Accepted"})
        assert len(stamped) == 1
        item = follower._receive.receive_nowait()
        assert isinstance(item, HubEvent)
        assert (item.name, item.data["charger_id"]) == ("charger.boot", "CP-1")
        assert hub.statistics().published == 1
    # One event for two subscribers is built once, with one sequence number.
    async with hub.subscribe() as first, hub.subscribe() as second:
        hub.publish("meter.values", {"charger_id": "CP-2"})
        a, b = first._receive.receive_nowait(), second._receive.receive_nowait()
        assert a is b
    assert len(stamped) == 2
    await trio.lowlevel.checkpoint()


async def test_frame_subscribers_are_counted_through_leaving_overlap_and_overflow() -> None:
    # The frame log builds a frame event only while wants_frames() (issue 14): the count
    # must follow every way a subscriber comes and goes, or a console misses frames.
    hub = EventHub(2)
    frame = {"charger_id": "CP-1", "payload": "[2]"}
    assert not hub.wants_frames()
    async with hub.subscribe(frames=True) as first:
        # The control server re-subscribes a session before the old pump has left.
        async with hub.subscribe(frames=True, charger_id="CP-1") as _second:
            assert hub.wants_frames()
        assert hub.wants_frames()  # one left, the other still watches
        # Overflowed: still counted; it gets RESYNC, then frames again.
        for _ in range(5):
            hub.publish("frame", frame)
        assert hub.wants_frames()
        with trio.fail_after(5):
            assert await first.receive() == "resync"
        hub.publish("frame", frame)
        with trio.fail_after(5):
            item = await first.receive()
        assert isinstance(item, HubEvent)
        assert item.name == "frame"
    assert not hub.wants_frames()
    # A subscriber whose body raises is no longer counted.
    with pytest.raises(KeyError):
        async with hub.subscribe(frames=True):
            raise KeyError("x")
    assert not hub.wants_frames()
    async with hub.subscribe(kinds=("frame",)):  # frames=False: gets none, not counted
        assert not hub.wants_frames()
