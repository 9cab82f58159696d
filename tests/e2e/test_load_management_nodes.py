"""Site load management is for one node (issue 17 with issue 18): each node's load
manager sees only its own chargers' sessions and would count the other nodes' chargers
at their fallback, so two nodes would each hand out the capacity the other uses and
together overload the breaker. With cluster = true, circuits are refused: at start (from
the settings file or the database) and from ctl, with a message that says why."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from tests.e2e.conftest import server_settings, start_server
from tests.e2e.test_ctl import ctl
from voltaro import app
from voltaro.domain.circuits import Circuit, CircuitConfig
from voltaro.startup import StartupError
from voltaro.store import circuits
from voltaro.store.db import Database

pytestmark = pytest.mark.postgres

SITE = CircuitConfig(circuits=(Circuit(circuit_id="site", limit_amps=63.0),))


async def test_circuits_in_the_settings_file_refuse_a_cluster_node(
    postgres_url: str, tmp_path: Path
) -> None:
    settings = server_settings(postgres_url, tmp_path, circuits=SITE, cluster=True, node_id="n1")
    with pytest.raises(StartupError, match="site load management runs on one node"):
        with trio.fail_after(30):  # a node that starts would run until cancelled
            await app.run(settings)


async def test_circuits_in_the_database_refuse_a_cluster_node(
    postgres_url: str, tmp_path: Path
) -> None:
    db = Database(postgres_url)
    try:
        db.upgrade()
        db.run_sync(circuits.add_circuit, Circuit(circuit_id="site", limit_amps=63.0))
    finally:
        db.dispose()
    settings = server_settings(postgres_url, tmp_path, cluster=True, node_id="n1")
    with pytest.raises(StartupError, match="circuit site is configured and cluster = true"):
        with trio.fail_after(30):
            await app.run(settings)


async def test_ctl_cannot_add_a_circuit_on_a_cluster_node(
    postgres_url: str, tmp_path: Path
) -> None:
    settings = server_settings(postgres_url, tmp_path, cluster=True, node_id="n1")
    async with trio.open_nursery() as nursery:
        server, stop = await start_server(nursery, settings)
        try:
            added = await ctl(server, "circuits", "add", "site", "--limit", "63")
            assert added.returncode != 0
            assert b"site load management runs on one node" in added.stderr, added.stderr
            assert server.run(circuits.load_site).circuits == ()
        finally:
            stop.set()
            server.db.dispose()
