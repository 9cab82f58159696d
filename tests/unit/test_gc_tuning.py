"""The collector settings the server runs with (voltaro.gc_tuning, issue 14)."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from voltaro.gc_tuning import THRESHOLDS, tune_for_long_lived_connections


@pytest.fixture
def restored_gc() -> Iterator[None]:
    before = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*before)


@pytest.mark.usefixtures("restored_gc")
def test_code_is_frozen_and_full_collections_are_rarer() -> None:
    gc.unfreeze()
    assert gc.get_freeze_count() == 0
    tune_for_long_lived_connections()
    # The imported code is out of every collection's walk from now on ...
    assert gc.get_freeze_count() > 10_000
    # ... young and middle generations small (short pauses), full collections rare: no
    # more often, in allocations, than the session-6 tuning (700, 10, 100).
    assert gc.get_threshold() == THRESHOLDS
    young, middle, full = THRESHOLDS
    assert young <= 700
    assert middle <= 2
    assert young * (middle + 1) * full >= 700 * 11 * 100 * 0.5


@pytest.mark.usefixtures("restored_gc")
def test_cyclic_garbage_made_afterwards_is_still_collected() -> None:
    tune_for_long_lived_connections()

    class Node:
        other: object

    a, b = Node(), Node()
    a.other, b.other = b, a
    del a, b
    assert gc.collect() >= 2  # the cycle made after the freeze is found and freed
