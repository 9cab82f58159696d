"""The CALLERROR log: every one counted, at most ``burst`` lines per charger per window."""

from __future__ import annotations

import logging

import pytest

from voltaro.protocol.callerrors import CallErrorLog


def test_rate_limited_per_charger_and_summarised(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="voltaro.protocol")
    now = [0.0]
    errors = CallErrorLog(window=60.0, burst=2, clock=lambda: now[0])
    for i in range(5):
        errors.sent("CP-1", f"m{i}", "MeterValues", "InternalError", "storage")
    errors.sent("CP-2", "x", None, "ProtocolError", "not an array")
    lines = [r.getMessage() for r in caplog.records]
    assert len([line for line in lines if "charger=CP-1" in line]) == 2
    assert len([line for line in lines if "charger=CP-2" in line]) == 1
    assert "action=-" in lines[-1]
    assert errors.count("CP-1") == 5
    assert errors.count("CP-2") == 1
    assert errors.count("CP-3") == 0
    caplog.clear()
    now[0] = 61.0  # a new window: the held-back lines are summarised with the next one
    errors.sent("CP-1", "m5", "MeterValues", "InternalError", "storage")
    (line,) = [r.getMessage() for r in caplog.records]
    assert "message=m5" in line
    assert "3 more not logged" in line
    assert errors.counts() == {"CP-1": 6, "CP-2": 1}
