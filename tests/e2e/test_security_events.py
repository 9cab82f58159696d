"""Security events (issue 15, "Hardening"): counted, one structured log line each, in the
event stream (console alerts), `voltaro ctl security events` and GET /security/events;
more than 5 takeovers of one identity within 10 minutes raise one alert."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from console.model import Site
from tests.e2e.conftest import server_settings, start_server
from tests.e2e.control_client import ControlClient
from tests.support.charger import HandshakeRefused, RawCharger
from voltaro.domain.credentials import password_bytes
from voltaro.settings import ApiScope, ApiToken
from voltaro.store import chargers

READ = "read-token-0123456789"
PASSWORD = "00112233445566778899aabbccddeeff00112233"


async def test_takeovers_downgrades_and_failed_logins(
    database_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = server_settings(
        database_url,
        tmp_path,
        http_enabled=True,
        http_port=0,
        api_tokens=(ApiToken(token=READ, scope=ApiScope.READ, name="monitor"),),
    )
    async with trio.open_nursery() as nursery:
        server, stop = await start_server(nursery, settings)
        try:
            server.run(chargers.add_charger, "CP-T")
            server.run(
                chargers.add_charger, "CP-P", password=password_bytes(PASSWORD), security_profile=1
            )
            watcher = await ControlClient.connect(server.addresses.control_socket or "")
            assert (await watcher.request("subscribe", {}))["ok"]
            # Seven connections for one identity, each replacing the one before.
            sockets = []
            for _ in range(7):
                cp = await RawCharger.connect(f"{server.url}/CP-T")
                await cp.boot()
                sockets.append(cp)
            # A wrong password twice: counted, and summarised in the log per source.
            for _ in range(2):
                with pytest.raises(HandshakeRefused):
                    await RawCharger.connect(f"{server.url}/CP-P", password=b"x" * 20)
            env = {**os.environ, "VOLTARO_CONTROL_SOCKET": server.addresses.control_socket or ""}
            ctl = await trio.run_process(
                [sys.executable, "-m", "voltaro", "ctl", "--json", "security", "events"],
                capture_stdout=True,
                capture_stderr=True,
                env=env,
            )
            summary = json.loads(ctl.stdout)
            assert summary["counts"]["takeover"] == 6
            assert summary["counts"]["takeover_alert"] == 1
            assert summary["counts"]["auth_failed"] == 2
            assert summary["recent"][0]["kind"] in ("takeover", "takeover_alert")
            human = await trio.run_process(
                [sys.executable, "-m", "voltaro", "ctl", "security", "events"],
                capture_stdout=True,
                env=env,
            )
            assert b"takeover_alert" in human.stdout
            assert server.addresses.http is not None
            host, port = server.addresses.http
            async with httpx.AsyncClient(
                base_url=f"http://{host}:{port}",
                headers={"Authorization": f"Bearer {READ}"},
                timeout=10,
            ) as client:
                answer = await client.get("/security/events")
            assert answer.status_code == 200
            assert answer.json()["counts"] == summary["counts"]
            await watcher.request("status")
            events = [e for e in watcher.events if e.get("event") == "security.event"]
            kinds = [e["data"]["kind"] for e in events]
            assert kinds.count("takeover") == 6
            assert kinds.count("takeover_alert") == 1
            # The console turns them into alerts (one per charger and kind).
            site = Site()
            for event in events:
                site.apply(event["event"], event["data"], event["at"])
            alerts: dict[str, Any] = {a.key: a for a in site.alerts.values()}
            assert "CP-T:security:takeover_alert" in alerts
            assert (
                "6 connections replaced each other" in alerts["CP-T:security:takeover_alert"].text
            )
            assert "CP-T" not in site.chargers  # no skeleton row from a security event
            await watcher.aclose()
            for cp in sockets:
                await cp.close()
        finally:
            stop.set()
            server.db.dispose()
    lines = [r.getMessage() for r in caplog.records if "security: event=" in r.getMessage()]
    assert sum("event=takeover charger=CP-T" in line for line in lines) == 6
    assert sum("event=takeover_alert charger=CP-T" in line for line in lines) == 1
