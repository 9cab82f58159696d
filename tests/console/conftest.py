"""Fixtures of the console tests."""

from __future__ import annotations

import pytest


@pytest.fixture
def no_age_tick(monkeypatch: pytest.MonkeyPatch) -> None:
    """The console's "last seen 12s ago" redraw every AGES_EVERY seconds, off: it marks
    every row for redrawing, which would hide a row a change failed to redraw within
    the tests' PROMPT bound (support.py)."""
    monkeypatch.setattr("console.app.AGES_EVERY", 3600.0)
