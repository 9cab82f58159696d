"""Broken today #9: the palette's Screenshot command failed (Textual saves into
~/Downloads by default); it now saves where the operator can find it and says where."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from console.app import ConsoleApp
from tests.console.support import until

pytestmark = pytest.mark.asyncio


async def test_palette_screenshot_is_saved(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VOLTARO_SCREENSHOT_DIR", str(tmp_path / "shots"))
    app = ConsoleApp(str(tmp_path / "no-server.sock"))
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("ctrl+p")
        await pilot.press(*"screenshot")
        await pilot.pause(0.3)
        await pilot.press("enter")
        async with asyncio.timeout(5):
            await until(pilot, lambda: any((tmp_path / "shots").glob("*.svg")))
        shot = next((tmp_path / "shots").glob("*.svg"))
        assert "<svg" in shot.read_text()
        assert any("Saved screenshot to" in str(n.message) for n in app._notifications)
