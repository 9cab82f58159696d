"""Broken today #2: the header follows the server's health live (connections after a
restart, a database outage gets a banner), not only on a resync."""

from __future__ import annotations

import asyncio
from pathlib import Path

import psycopg
import pytest
from textual.widgets import Static

from console.app import ConsoleApp
from tests.console.support import PROMPT, RawCharger, Server, running_server, until

pytestmark = [pytest.mark.asyncio, pytest.mark.usefixtures("no_age_tick")]


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
            # yet the header follows each promptly (PROMPT).
            chargers = []
            for n, expected in ((1, "1 of 2 online"), (2, "2 of 2 online")):
                chargers.append(await RawCharger.connect(server.port, f"CP-{n}"))
                async with asyncio.timeout(PROMPT):
                    await until(pilot, lambda e=expected: e in app.sub_title)  # type: ignore[misc]
            for charger in chargers:
                await charger.close()
            async with asyncio.timeout(PROMPT):
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


@pytest.mark.postgres
async def test_the_site_bar_shows_every_node_its_lease_and_chargers_live(
    tmp_path: Path, postgres_url: str
) -> None:
    """Issue 18 ("the console shows the nodes, their leases and how many chargers each
    owns"): live, with no resync: a node that joins, a charger that connects, a node
    whose lease runs out."""
    server = Server(tmp_path, postgres_url)
    server.env.update(
        {"VOLTARO_CLUSTER": "true", "VOLTARO_NODE_ID": "east-1", "VOLTARO_NODE_LEASE_SECONDS": "3"}
    )
    await server.start()
    admin = psycopg.connect(postgres_url.replace("+psycopg", ""), autocommit=True)
    try:
        await server.ctl("chargers.add", {"charger_id": "CP-1"})
        app = ConsoleApp(server.socket)
        async with app.run_test(size=(160, 30)) as pilot:
            bar = app.query_one("#sitebar", Static)
            async with asyncio.timeout(10):
                await until(pilot, lambda: "nodes: east-1*" in str(bar.render()))
            # Another node joins with a charger (as its claim writes it).
            admin.execute(
                "INSERT INTO cluster_nodes (node_id, incarnation, address, started_at, "
                "lease_until) VALUES ('west-2', 'w', NULL, now() AT TIME ZONE 'UTC', "
                "(now() AT TIME ZONE 'UTC') + interval '6 seconds')"
            )
            await server.ctl("chargers.add", {"charger_id": "CP-W"})
            admin.execute(
                "INSERT INTO charger_owners (charger_id, node_id, incarnation, epoch, "
                "connected_at) VALUES ('CP-W', 'west-2', 'w', 1, now() AT TIME ZONE 'UTC')"
            )
            charger = await RawCharger.connect(server.port, "CP-1")
            try:
                async with asyncio.timeout(10):
                    await until(
                        pilot,
                        lambda: (
                            "east-1* " in str(bar.render())
                            and "1 charger" in str(bar.render()).split("east-1*")[1][:25]
                            and "west-2 " in str(bar.render())
                            and "(2/2 nodes live)" in app.sub_title
                        ),
                    )
                line = next(
                    ln for ln in str(bar.render()).splitlines() if ln.startswith("nodes:")
                )
                assert len(line) <= 78, line
                assert " s " in line  # the lease left
                # west-2's lease runs out: shown expired, its charger released.
                async with asyncio.timeout(15):
                    await until(
                        pilot,
                        lambda: (
                            "west-2 EXPIRED" in str(bar.render())
                            and "(1/2 nodes live)" in app.sub_title
                        ),
                    )
            finally:
                await charger.close()
    finally:
        admin.close()
        await server.stop()
