"""Issue 11.1: the loop guard every background task uses, and the one loop the e2e test
cannot reach without an outage (the database outage log)."""

from __future__ import annotations

import logging

import pytest
import trio
import trio.testing

from voltaro.background import BACKOFF_MAX, LOG_EVERY, LoopGuard
from voltaro.store.errors import TransientStorageError
from voltaro.store.health import DatabaseHealth


async def test_a_failing_loop_logs_once_a_minute_and_backs_off(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    guard = LoopGuard("some loop", logging.getLogger("test.background"))
    waits = []
    for i in range(100):
        waits.append(guard.failed(RuntimeError(f"boom {i}"), "doing its work"))
        await trio.sleep(waits[-1])
    lines = [r for r in caplog.records if r.name == "test.background"]
    # The first with its traceback, then one line a minute with the count and the latest.
    assert lines[0].exc_info is not None
    assert lines[0].getMessage() == "some loop: unexpected error while doing its work; continuing"
    assert all(r.exc_info is None for r in lines[1:])
    elapsed = sum(waits)
    assert len(lines) <= 1 + elapsed / LOG_EVERY + 1
    assert "failures since the last report; latest RuntimeError: boom" in lines[1].getMessage()
    # Backing off: doubling from 0.5 s up to the maximum, never spinning.
    assert waits[:4] == [0.5, 1.0, 2.0, 4.0]
    assert max(waits) == BACKOFF_MAX
    assert guard.failures == 100
    guard.succeeded()
    assert guard.failed(RuntimeError("again"), "doing its work") == 0.5


async def test_the_outage_log_survives_an_unexpected_error(
    autojump_clock: trio.testing.MockClock,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    health = DatabaseHealth()
    health.failed("connection refused")  # an outage: the summary loop calls check()
    calls = []

    def broken(*, summary_due: bool) -> None:
        calls.append(summary_due)
        raise RuntimeError("a bug in the summary")

    monkeypatch.setattr(health, "check", broken)
    with trio.move_on_after(120):
        await health.run(30.0)  # raises nothing: the guard catches at the loop
    assert len(calls) >= 5  # it went on (backing off between failures)
    assert health.guard.failures == len(calls)
    first = [r for r in caplog.records if "database outage log: unexpected error" in r.message]
    assert first
    assert first[0].exc_info is not None


async def test_a_database_outage_is_not_an_unexpected_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Issue 21 item 5: the outage is logged by the database's health report; a loop that
    meets it backs off without a line (and without counting a bug)."""
    guard = LoopGuard("some loop", logging.getLogger("test.background"))
    first = guard.failed(TransientStorageError("database unavailable: locked"), "writing")
    second = guard.failed(TransientStorageError("database unavailable: locked"), "writing")
    assert caplog.records == []
    assert (guard.failures, guard.outage_retries) == (0, 2)
    assert 0 < first < second <= BACKOFF_MAX
