"""The 1.6 security extension messages from an independent charger (the `ocpp` library's
asyncio ChargePoint over `websockets`): SecurityEventNotification is stored before it
is answered, shown in `chargers show`, counted and published as a security event."""

from __future__ import annotations

import functools
import json
import os
import sys
from typing import Any

import trio

from tests.e2e.conftest import RunningServer
from tests.support import ocpp_charger
from voltaro.store import chargers, security


async def test_security_event_notification_is_stored_and_shown(server: RunningServer) -> None:
    server.run(chargers.add_charger, "CP-S")

    async def report(cp: Any, ws: Any) -> dict[str, Any]:
        from ocpp.v16 import call

        answer = await cp.call(
            call.SecurityEventNotification(
                type="InvalidCentralSystemCertificate",
                timestamp="2026-12-04T10:00:00Z",
                tech_info="issuer unknown",
            )
        )
        return {"answer": answer}

    outcome = await trio.to_thread.run_sync(
        functools.partial(ocpp_charger.boot, server.url, "CP-S", then=report)
    )
    assert outcome.accepted, outcome
    assert outcome.error is None, outcome
    # Answered only after it was stored.
    (stored,) = server.run(security.recent_security_events, "CP-S")
    assert stored.type == "InvalidCentralSystemCertificate"
    assert stored.tech_info == "issuer unknown"
    assert stored.at.isoformat().startswith("2026-12-04T10:00:00")
    env = {**os.environ, "VOLTARO_CONTROL_SOCKET": server.addresses.control_socket or ""}
    shown = await trio.run_process(
        [sys.executable, "-m", "voltaro", "ctl", "--json", "chargers", "show", "CP-S"],
        capture_stdout=True,
        env=env,
    )
    view = json.loads(shown.stdout)
    assert view["security_events"] == [
        {
            "type": "InvalidCentralSystemCertificate",
            "tech_info": "issuer unknown",
            "at": "2026-12-04T10:00:00Z",
        }
    ]
    events = await trio.run_process(
        [sys.executable, "-m", "voltaro", "ctl", "--json", "security", "events"],
        capture_stdout=True,
        env=env,
    )
    summary = json.loads(events.stdout)
    assert summary["counts"]["charger_reported"] == 1
    assert summary["recent"][0]["detail"] == "InvalidCentralSystemCertificate: issuer unknown"
