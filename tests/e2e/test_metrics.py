"""GET /metrics (issue 19): scraped during real traffic, the counters move exactly as the
traffic did; a ``metrics`` token reads /metrics and nothing else.

The server runs on loopback with its HTTP API; the charger is raw JSON frames over
`websockets` (tests/support/charger.py), the scrape is httpx and Prometheus' own text
parser. SQLite and PostgreSQL.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.conftest import RunningServer, server_settings, start_server
from tests.e2e.control_client import ControlClient
from tests.support.charger import HandshakeRefused, RawCharger
from tests.support.outage import database_outage
from voltaro.settings import ApiScope, ApiToken
from voltaro.store import chargers, tags

DOCS = Path(__file__).resolve().parents[2] / "docs"
METRICS = "metrics-token-0123456789"
READ = "read-token-0123456789ab"

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


class Scraper:
    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client

    async def text(self, token: str = METRICS) -> str:
        answer = await self.client.get("/metrics", headers={"Authorization": f"Bearer {token}"})
        assert answer.status_code == 200, answer.text
        assert answer.headers["content-type"].startswith("text/plain; version=0.0.4")
        return answer.text

    async def scrape(self, token: str = METRICS) -> Samples:
        samples: Samples = {}
        for family in text_string_to_metric_families(await self.text(token)):
            for sample in family.samples:
                samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
        return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    """One series' value; 0 when the series does not exist (yet)."""
    return samples.get((name, frozenset(labels.items())), 0.0)


def delta(before: Samples, after: Samples, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


@pytest.fixture
async def metered(
    database_url: str, tmp_path: Path
) -> AsyncIterator[tuple[RunningServer, Scraper]]:
    settings = server_settings(
        database_url,
        tmp_path,
        http_enabled=True,
        http_port=0,
        call_timeout=1.0,
        api_tokens=(
            ApiToken(token=METRICS, scope=ApiScope.METRICS, name="prometheus"),
            ApiToken(token=READ, scope=ApiScope.READ, name="viewer"),
        ),
    )
    async with trio.open_nursery() as nursery:
        server, stop = await start_server(nursery, settings)
        assert server.addresses.http is not None
        host, port = server.addresses.http
        try:
            async with httpx.AsyncClient(base_url=f"http://{host}:{port}", timeout=10) as client:
                yield server, Scraper(client)
        finally:
            stop.set()
            server.db.dispose()


def meter_values(transaction_id: int, i: int) -> dict[str, Any]:
    return {
        "connectorId": 1,
        "transactionId": transaction_id,
        "meterValue": [
            {
                "timestamp": f"2026-01-01T10:{i:02d}:00Z",
                "sampledValue": [{"value": str(1000 + 100 * i), "unit": "Wh"}],
            }
        ],
    }


async def test_counters_follow_the_traffic(metered: tuple[RunningServer, Scraper]) -> None:
    server, scraper = metered
    server.run(chargers.add_charger, "CP-1")
    server.run(tags.add_tag, "TAG-1")
    before = await scraper.scrape()
    assert value(before, "voltaro_db_up") == 1
    assert value(before, "voltaro_transactions_active") == 0
    # Series that alerts rely on exist before the first event.
    assert ("voltaro_handshakes_refused_total", frozenset({("reason", "unknown_charger")})) in (
        before
    )

    cp = await RawCharger.connect(f"{server.url}/CP-1")
    assert (await cp.boot())["status"] == "Accepted"
    start = await cp.call(
        "StartTransaction",
        {
            "connectorId": 1,
            "idTag": "TAG-1",
            "meterStart": 1000,
            "timestamp": "2026-01-01T10:00:00Z",
        },
    )
    tx = start["transactionId"]
    during = await scraper.scrape()
    assert value(during, "voltaro_transactions_active") == 1
    assert value(during, "voltaro_connections", state="connected") == 1

    n = 7
    for i in range(1, n + 1):
        assert await cp.call("MeterValues", meter_values(tx, i)) == {}
    stop = {
        "transactionId": tx,
        "meterStop": 4500,
        "timestamp": "2026-01-01T11:00:00Z",
        "reason": "Local",
    }
    assert await cp.call("StopTransaction", stop) == {}  # no idTag: no idTagInfo
    # A charger-chosen action name is counted as "unknown", never as a label of its own.
    assert (await cp.call("NoSuchAction", {}))[2] == "NotImplemented"
    with pytest.raises(HandshakeRefused):
        await RawCharger.connect(f"{server.url}/NOT-REGISTERED")

    # A command the charger never answers: timeout after call_timeout (1 s).
    assert server.addresses.control_socket is not None
    control = await ControlClient.connect(server.addresses.control_socket)
    result = await control.command("CP-1", "clear-cache")
    await control.aclose()
    assert result["ok"] is False, result
    assert result["error"]["code"] == "timeout", result
    after = await scraper.scrape()

    def moved(name: str, **labels: str) -> float:
        return delta(before, after, name, **labels)

    calls_in = {"direction": "in", "type": "call"}
    assert moved("voltaro_messages_total", **calls_in, action="MeterValues") == n
    assert (
        moved("voltaro_messages_total", direction="out", type="result", action="MeterValues") == n
    )
    assert moved("voltaro_messages_total", **calls_in, action="BootNotification") == 1
    assert moved("voltaro_messages_total", **calls_in, action="StartTransaction") == 1
    assert moved("voltaro_messages_total", **calls_in, action="StopTransaction") == 1
    assert moved("voltaro_messages_total", **calls_in, action="unknown") == 1
    assert moved("voltaro_messages_total", direction="out", type="error", action="unknown") == 1
    assert moved("voltaro_messages_total", direction="out", type="call", action="ClearCache") == 1
    assert moved("voltaro_callerrors_sent_total", code="NotImplemented") == 1
    assert moved("voltaro_answer_duration_seconds_count", action="MeterValues") == n
    assert moved("voltaro_answer_duration_seconds_bucket", action="MeterValues", le="+Inf") == n
    assert moved("voltaro_answer_duration_seconds_sum", action="MeterValues") > 0
    assert moved("voltaro_handshakes_refused_total", reason="unknown_charger") == 1
    assert moved("voltaro_commands_total", action="ClearCache", outcome="timeout") == 1
    assert moved("voltaro_sessions_total") == 1
    assert moved("voltaro_energy_delivered_wh_total") == 3500
    assert moved("voltaro_events_total", event="transaction.started") == 1
    assert moved("voltaro_events_total", event="transaction.stopped") == 1
    assert moved("voltaro_events_total", event="meter.values") == n
    assert value(after, "voltaro_transactions_active") == 0
    # Boot, start, n meter values, stop: each stored by at least one unit of work.
    assert moved("voltaro_db_unit_duration_seconds_count") >= n + 3
    assert moved("voltaro_db_errors_total", kind="transient") == 0
    assert moved("voltaro_db_errors_total", kind="permanent") == 0
    # No series is labelled with a charger id.
    assert not any("CP-1" in str(labels) for _, labels in after)

    # The database goes away: the charger's MeterValues gets InternalError (it retries),
    # and the database figures say why.
    with database_outage(server.settings.database_url) as outage:
        answer = await cp.call("MeterValues", meter_values(tx, n + 1), timeout=20)
        assert answer[0] == 4, answer
        assert answer[2] == "InternalError", answer
        down = await scraper.scrape()
    assert delta(after, down, "voltaro_db_errors_total", kind="transient") >= 1
    assert delta(after, down, "voltaro_db_given_up_total") == 1
    assert delta(after, down, "voltaro_callerrors_sent_total", code="InternalError") == 1
    assert delta(after, down, "voltaro_messages_total", **calls_in, action="MeterValues") == 1
    assert value(down, "voltaro_db_up") == 0
    if not outage.sqlite:  # (SQLite write-locked still reads)
        # The active-transactions count needs the database: left out rather than stale.
        assert ("voltaro_transactions_active", frozenset()) not in down
    await cp.close()


async def test_metrics_token_reads_metrics_only(metered: tuple[RunningServer, Scraper]) -> None:
    _, scraper = metered
    client = scraper.client
    anonymous = await client.get("/metrics")
    assert anonymous.status_code == 401
    assert anonymous.headers["www-authenticate"] == "Bearer"
    wrong = await client.get("/metrics", headers={"Authorization": "Bearer not-a-token-at-all"})
    assert wrong.status_code == 401
    # The scrape token reads no charger data.
    refused = await client.get("/charge_points", headers={"Authorization": f"Bearer {METRICS}"})
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "forbidden"
    # A person's read token may scrape too (curl during an incident).
    samples = await scraper.scrape(READ)
    assert value(samples, "voltaro_db_up") == 1
    allowed = await client.get("/charge_points", headers={"Authorization": f"Bearer {READ}"})
    assert allowed.status_code == 200
    # /metrics is not part of the JSON API's description.
    described = await client.get("/openapi.json")
    assert "/metrics" not in described.json()["paths"]


async def test_two_servers_in_one_process_count_apart(database_url: str, tmp_path: Path) -> None:
    """One registry per server: another server's traffic never shows in this one's."""
    results: list[float] = []
    async with trio.open_nursery() as nursery:
        servers = []
        for i in range(2):
            settings = server_settings(
                database_url if i == 0 else f"sqlite:///{tmp_path / 'second.db'}",
                tmp_path / f"s{i}",
                http_enabled=True,
                http_port=0,
                api_tokens=(ApiToken(token=METRICS, scope=ApiScope.METRICS),),
            )
            (tmp_path / f"s{i}").mkdir()
            servers.append(await start_server(nursery, settings))
        first = servers[0][0]
        first.run(chargers.add_charger, "CP-A")
        cp = await RawCharger.connect(f"{first.url}/CP-A")
        await cp.boot()
        await cp.close()
        for server, stop in servers:
            assert server.addresses.http is not None
            host, port = server.addresses.http
            async with httpx.AsyncClient(base_url=f"http://{host}:{port}", timeout=10) as client:
                samples = await Scraper(client).scrape()
            results.append(
                value(
                    samples,
                    "voltaro_messages_total",
                    direction="in",
                    type="call",
                    action="BootNotification",
                )
            )
            stop.set()
            server.db.dispose()
    assert results == [1, 0]


async def test_docs_and_dashboard_name_exactly_what_is_served(
    metered: tuple[RunningServer, Scraper],
) -> None:
    """docs/metrics.md describes every voltaro_ series served and no other; the Grafana
    dashboard queries only series that exist."""
    _, scraper = metered
    served = set(re.findall(r"^# TYPE (\S+) ", await scraper.text(), re.MULTILINE))
    ours = {name for name in served if name.startswith("voltaro_")}
    documented = set(re.findall(r"`(voltaro_[a-z_]+)", (DOCS / "metrics.md").read_text()))
    assert documented == ours
    dashboard = json.loads((DOCS / "grafana-dashboard.json").read_text())
    queries = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    assert len(queries) > 30
    used = {
        re.sub(r"_(bucket|sum|count)$", "", name)
        for query in queries
        for name in re.findall(r"\b((?:voltaro|process)_[a-z_]+)", query)
    }
    assert used <= served, used - served
    # Every family of ours is on the dashboard somewhere.
    assert ours <= used, ours - used
