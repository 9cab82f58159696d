"""Broken today #2: the header follows the server's health live (connections after a
restart, a database outage gets a banner), not only on a resync."""

from __future__ import annotations

import asyncio
from pathlib import Path

import psycopg
import pytest
from textual.widgets import Static

from console.app import ConsoleApp
from tests.console.support import RawCharger, Server, running_server, until

pytestmark = pytest.mark.asyncio


async def test_header_counts_chargers_coming_back_after_a_restart(tmp_path: Path) -> None:
    async with running_server(tmp_path) as server:
        await server.ctl("chargers.add", {"charger_id": "CP-1"})
        await server.ctl("chargers.add", {"charger_id": "CP-2"})
        app = ConsoleApp(server.socket)
        async with app.run_test(size=(120, 30)) as pilot:
            async with asyncio.timeout(10):
                await until(pilot, lambda: not app.stale and "0 of 2 online" in app.sub_title)
            await server.stop()
            async with asyncio.timeout(10):
                await until(pilot, lambda: app.stale)
            await server.start()
            async with asyncio.timeout(15):
                await until(pilot, lambda: not app.stale and "0 of 2 online" in app.sub_title)
            # The chargers reconnect after the console re-read the state: no resync comes,
            # yet the header follows within a second of each.
            chargers = []
            for n, expected in ((1, "1 of 2 online"), (2, "2 of 2 online")):
                chargers.append(await RawCharger.connect(server.port, f"CP-{n}"))
                async with asyncio.timeout(1):
                    await until(pilot, lambda e=expected: e in app.sub_title)  # type: ignore[misc]
            for charger in chargers:
                await charger.close()
            async with asyncio.timeout(1):
                await until(pilot, lambda: "0 of 2 online" in app.sub_title)


@pytest.mark.postgres
async def test_database_outage_gets_a_banner_and_clears(tmp_path: Path, postgres_url: str) -> None:
    name = postgres_url.rsplit("/", 1)[-1]
    admin = psycopg.connect(
        postgres_url.rsplit("/", 1)[0].replace("+psycopg", "") + "/test", autocommit=True
    )
    try:
        async with running_server(tmp_path, postgres_url) as server:
            app = ConsoleApp(server.socket)
            async with app.run_test(size=(120, 30)) as pilot:
                banner = app.query_one("#banner", Static)
                async with asyncio.timeout(10):
                    await until(pilot, lambda: not app.stale and "db ok" in app.sub_title)
                assert not banner.has_class("shown")
                admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
                admin.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                    (name,),
                )
                # The server probes every 2 s (each probe bounded by 5 s).
                async with asyncio.timeout(15):
                    await until(pilot, lambda: banner.has_class("shown"))
                assert "DATABASE DOWN" in str(banner.render())
                assert "DATABASE DOWN" in app.sub_title
                assert any("DATABASE DOWN" in line.text for line in app.feed_lines)
                admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
                async with asyncio.timeout(15):
                    await until(pilot, lambda: not banner.has_class("shown"))
                assert "db ok" in app.sub_title
                assert any("reachable again" in line.text for line in app.feed_lines)
    finally:
        admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        admin.close()


@pytest.mark.postgres
async def test_header_names_the_cluster_node_and_the_live_nodes(
    tmp_path: Path, postgres_url: str
) -> None:
    """Issue 18: a console attached to one node of several says which one, and how many
    nodes hold a lease (as of the last status read)."""
    server = Server(tmp_path, postgres_url)
    server.env.update({"VOLTARO_CLUSTER": "true", "VOLTARO_NODE_ID": "east-1"})
    await server.start()
    try:
        app = ConsoleApp(server.socket)
        async with app.run_test(size=(160, 30)) as pilot:
            async with asyncio.timeout(10):
                await until(pilot, lambda: not app.stale and "node east-1" in app.sub_title)
            assert "node east-1 (1/1 nodes live)" in app.sub_title
            assert "FENCED" not in app.sub_title
    finally:
        await server.stop()
