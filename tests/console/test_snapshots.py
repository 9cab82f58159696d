"""Snapshots of the console's screens (pytest-textual-snapshot; baselines in
__snapshots__/, refresh with `pytest --snapshot-update` after reviewing the report)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from console.app import ConsoleApp


def _missing(tmp_path: Path) -> ConsoleApp:
    # A fixed path that does not exist: the banner names it, so it must not vary per run.
    return ConsoleApp("/nonexistent/voltaro/control.sock")


async def _until_disconnected(pilot: Any) -> None:
    async with asyncio.timeout(5):
        while "disconnected" not in (pilot.app.sub_title or ""):
            await pilot.pause(0.01)


def test_disconnected_screen(snap_compare: Any, tmp_path: Path) -> None:
    assert snap_compare(_missing(tmp_path), run_before=_until_disconnected, terminal_size=(80, 24))


def test_help_screen(snap_compare: Any, tmp_path: Path) -> None:
    async def open_help(pilot: Any) -> None:
        await _until_disconnected(pilot)
        await pilot.press("f1")
        await pilot.pause(0.1)

    assert snap_compare(_missing(tmp_path), run_before=open_help, terminal_size=(80, 24))
