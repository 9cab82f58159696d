"""The database's worker slots (voltaro.store.write_order): batches first, background
units never starved, cancellation never loses a slot."""

from __future__ import annotations

import itertools

import trio
import trio.testing

from voltaro.store.write_order import Slots


async def test_a_cancelled_waiter_leaves_the_queue_and_the_slot_goes_on() -> None:
    slots = Slots(1)
    await slots.acquire_on_behalf_of("holder")
    got: list[str] = []

    async def take(name: str, urgent: bool) -> None:
        limiter = slots.urgent if urgent else slots
        await limiter.acquire_on_behalf_of(name)
        got.append(name)
        limiter.release_on_behalf_of(name)

    gone = trio.CancelScope()

    async def cancelled() -> None:
        with gone:
            await take("cancelled", True)

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(cancelled)
            await trio.testing.wait_all_tasks_blocked()
            nursery.start_soon(take, "other", False)
            await trio.testing.wait_all_tasks_blocked()
            assert slots.statistics().tasks_waiting == 2
            gone.cancel()
            await trio.testing.wait_all_tasks_blocked()
            assert slots.statistics().tasks_waiting == 1
            slots.release_on_behalf_of("holder")
    assert got == ["other"]
    assert slots.borrowed_tokens == 0


async def test_a_slot_given_to_a_waiter_cancelled_in_the_same_instant_is_passed_on() -> None:
    slots = Slots(1)
    await slots.acquire_on_behalf_of("holder")
    got: list[str] = []

    async def take(name: str) -> None:
        await slots.urgent.acquire_on_behalf_of(name)
        got.append(name)
        slots.urgent.release_on_behalf_of(name)

    scope = trio.CancelScope()

    async def doomed() -> None:
        with scope:
            await take("doomed")

    with trio.fail_after(5):  # a lost slot would leave "next" waiting forever
        async with trio.open_nursery() as nursery:
            nursery.start_soon(doomed)
            await trio.testing.wait_all_tasks_blocked()
            nursery.start_soon(take, "next")
            await trio.testing.wait_all_tasks_blocked()
            # Cancelled, then given the slot before it runs again: it must pass it on.
            scope.cancel()
            slots.release_on_behalf_of("holder")
    assert got == ["next"]
    assert slots.borrowed_tokens == 0


async def test_background_units_get_turns_while_batches_keep_coming() -> None:
    """A stream of batches that never stops (a saturated database) delays a background
    unit by its patience and then by one batch at a time, never forever."""
    slots = Slots(1, patience=0.05)
    ran: list[str] = []

    async def batch_stream(stream: int, stop: trio.Event) -> None:
        n = 0
        while not stop.is_set():
            name = f"batch{stream}.{n}"
            await slots.urgent.acquire_on_behalf_of(name)
            ran.append("batch")
            await trio.sleep(0.005)
            slots.urgent.release_on_behalf_of(name)
            n += 1

    async def background(name: str) -> None:
        await slots.acquire_on_behalf_of(name)
        ran.append(name)
        slots.release_on_behalf_of(name)

    stop = trio.Event()
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            for stream in range(3):
                nursery.start_soon(batch_stream, stream, stop)  # a batch always waits
            await trio.sleep(0.02)
            async with trio.open_nursery() as others:
                for n in range(3):
                    others.start_soon(background, f"bg{n}")
            stop.set()
    background_at = [i for i, x in enumerate(ran) if x != "batch"]
    assert len(background_at) == 3
    # Once overdue they take turns with the batches: never two in a row.
    assert all(b - a >= 2 for a, b in itertools.pairwise(background_at)), ran


def test_statistics_count_both_queues() -> None:
    slots = Slots(2)
    stats = slots.statistics()
    assert (stats.borrowed_tokens, stats.total_tokens, stats.tasks_waiting) == (0, 2, 0)
