"""Issue 11.1: no background task lets an unexpected exception reach the root nursery.

Each background loop of the real server (SQLite and PostgreSQL) gets an exception it
does not expect (a RuntimeError from the store call it makes, injected once); the test
asserts that the server keeps serving chargers, that the failure is logged once with
the loop's name and a traceback, that it is counted in ``status`` (what ``voltaro ctl
status`` and the console show), and, for the loops that run often, that the loop went
on after it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import RunningServer, eventually, serving
from tests.e2e.control_client import ControlClient
from tests.support.charger import HandshakeRefused, RawCharger
from voltaro.store import chargers


class Injected(RuntimeError):
    """The unexpected exception (no handler in the server names it)."""


@dataclass
class Injection:
    calls: int = 0
    raised: int = 0


def inject_once(monkeypatch: pytest.MonkeyPatch, target: Any, name: str) -> Injection:
    """Replace ``target.name`` by a wrapper that raises on its first call only."""
    original = getattr(target, name)
    seen = Injection()

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        seen.calls += 1
        if seen.raised == 0:
            seen.raised += 1
            raise Injected(f"injected into {name}")
        return original(*args, **kwargs)

    monkeypatch.setattr(target, name, wrapper)
    return seen


async def serves_a_charger(server: RunningServer, charger_id: str) -> None:
    if server.run(chargers.get_charger, charger_id) is None:
        server.run(chargers.add_charger, charger_id)
    cp = await RawCharger.connect(f"{server.url}/{charger_id}")
    assert (await cp.boot())["status"] == "Accepted"
    assert "currentTime" in await cp.call("Heartbeat", {})
    await cp.close()


async def background_failures(server: RunningServer) -> dict[str, int]:
    assert server.addresses.control_socket is not None
    client = await ControlClient.connect(server.addresses.control_socket)
    try:
        answer = await client.request("status")
    finally:
        await client.aclose()
    assert answer["ok"], answer
    failures: dict[str, int] = answer["result"]["protection"]["background_failures"]
    return failures


def logged_once(caplog: pytest.LogCaptureFixture, loop: str) -> None:
    lines = [r for r in caplog.records if r.getMessage().startswith(f"{loop}: unexpected error")]
    assert len(lines) == 1, [r.getMessage() for r in lines]
    assert lines[0].levelno == logging.ERROR
    assert lines[0].exc_info is not None
    assert isinstance(lines[0].exc_info[1], Injected)


def _store(module: str) -> Any:
    import importlib

    return importlib.import_module(f"voltaro.store.{module}")


def _class(path: str) -> Any:
    import importlib

    module, _, name = path.rpartition(".")
    return getattr(importlib.import_module(module), name)


# loop name (as logged and counted) -> (what to inject into, name, does the loop run
# again within seconds so that the test can see it go on).
LOOPS = {
    "last-seen writer": (lambda: _store("chargers"), "touch", True),
    "connected-flag writer": (lambda: _store("chargers"), "set_connected", True),
    "frame log": (lambda: _store("frames"), "evict_oldest", False),
    "frame-log retention sweep": (lambda: _store("frames"), "purge_frames", False),
    "health monitor": (
        lambda: _class("voltaro.service.health.HealthMonitor"),
        "publish_if_changed",
        True,
    ),
    "listener: pending-socket sweep": (
        lambda: _class("voltaro.net.admission.PendingSockets"),
        "sweep",
        True,
    ),
}


@pytest.mark.parametrize("loop", list(LOOPS))
async def test_an_unexpected_error_in_a_background_loop_is_logged_counted_and_survived(
    database_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    loop: str,
) -> None:
    target, name, repeats = LOOPS[loop]
    injection = inject_once(monkeypatch, target(), name)
    caplog.set_level(logging.INFO)
    async with serving(database_url, tmp_path, ping_interval=0) as server:
        first = "CP-1"
        if loop == "connected-flag writer":
            # The admission that waited for the failed round is refused (503, retry);
            # the charger's retry is served.
            server.run(chargers.add_charger, first)
            with pytest.raises(HandshakeRefused) as refused:
                await RawCharger.connect(f"{server.url}/{first}")
            assert refused.value.status == 503
        else:
            await serves_a_charger(server, first)  # traffic for the writers to write
        await eventually(lambda: injection.raised == 1, within=15.0)
        await serves_a_charger(server, "CP-2")
        if repeats:
            # The loop went on (after its back-off) and its next round worked.
            await eventually(lambda: injection.calls >= 2, within=15.0)
        await serves_a_charger(server, first)
        failures = await background_failures(server)
        assert failures[loop] == 1, failures
        assert sum(failures.values()) == 1, failures
        logged_once(caplog, loop)
