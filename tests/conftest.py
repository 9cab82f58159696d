"""Shared test configuration.

Test modules under tests/ run on trio unless they opt into asyncio: a coroutine test
function without the asyncio mark gets the trio mark here (pytest-trio with
trio_mode = false, so both plugins share one run; see style-anchors §0.4).
Console tests set a module-level ``pytestmark = pytest.mark.asyncio``.
"""

from __future__ import annotations

import inspect

import pytest


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        function = getattr(item, "function", None)
        if function is None or not inspect.iscoroutinefunction(function):
            continue
        if item.get_closest_marker("asyncio") is None and item.get_closest_marker("trio") is None:
            item.add_marker(pytest.mark.trio)
