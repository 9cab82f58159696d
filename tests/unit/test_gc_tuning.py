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
    # ... full collections wait for 100 middle-generation ones, young ones are unchanged.
    assert gc.get_threshold() == THRESHOLDS
    assert THRESHOLDS[0] <= 700
    assert THRESHOLDS[2] > 10


@pytest.mark.usefixtures("restored_gc")
def test_cyclic_garbage_made_afterwards_is_still_collected() -> None:
    tune_for_long_lived_connections()

    class Node:
        other: object

    a, b = Node(), Node()
    a.other, b.other = b, a
    del a, b
    assert gc.collect() >= 2  # the cycle made after the freeze is found and freed
