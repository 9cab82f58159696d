"""Several nodes start on one PostgreSQL database; SQLite refuses cluster mode (issue 18).

Also the harness itself: a charger that loses its node boots on the next one, the
database proxy that cuts one node's traffic really cuts it.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest

from tests.support.cluster import Cluster, _clean_env
from tests.support.cluster_charger import Charger, Link, running
from tests.support.outage import TcpProxy

pytestmark = [pytest.mark.cluster, pytest.mark.postgres]


@pytest.mark.asyncio
async def test_three_nodes_on_one_database_each_boot_a_charger(cluster: Cluster) -> None:
    assert all(node.running for node in cluster.nodes)
    assert len({node.ocpp_port for node in cluster.nodes}) == 3
    for node in cluster.nodes:
        link = await Link.open(node.url, f"CP-{node.node_id}", node=node.index)
        try:
            assert await link.boot() == "Accepted"
        finally:
            await link.close()
    rows = cluster.sql("SELECT charger_id FROM charge_points ORDER BY charger_id")
    assert [r[0] for r in rows] == ["CP-n1", "CP-n2", "CP-n3"]
    for node in cluster.nodes:
        status, body = await asyncio.to_thread(node.api, "GET", "/status")
        assert status == 200, body


@pytest.mark.asyncio
@pytest.mark.nodes(2)
async def test_a_charger_whose_node_is_killed_boots_on_the_next(cluster: Cluster) -> None:
    charger = Charger("CP-MOVER", cluster.urls, start=0)
    async with running([charger]):
        assert await charger.wait_booted() == 0
        killed_at = time.monotonic()
        cluster[0].kill()
        assert await charger.wait_booted(since=killed_at, within=10) == 1
    assert [c.node for c in charger.history] == [0, 1]
    assert charger.history[0].closed_at is not None
    assert not cluster[0].running
    assert cluster[1].running


def test_cluster_mode_on_sqlite_is_refused_in_one_line(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "voltaro",
            "serve",
            "--cluster",
            "--node-id",
            "n1",
            "--database-url",
            f"sqlite:///{tmp_path / 'v.db'}",
            "--control-socket",
            str(tmp_path / "ctl.sock"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env=_clean_env(),
        check=False,
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines() == [
        "voltaro: setting cluster: several nodes need a shared PostgreSQL database "
        "(database_url = postgresql+psycopg://...); SQLite is single-node (from flag --cluster)"
    ]
    assert not (tmp_path / "v.db").exists()


def test_the_database_proxy_forwards_cuts_and_restores(postgres_url: str) -> None:
    host_port = postgres_url.split("@", 1)[1].split("/", 1)[0]
    host, _, port = host_port.partition(":")
    proxy = TcpProxy(host, int(port or 5432))
    url = proxy.url_for(postgres_url).replace("postgresql+psycopg://", "postgresql://")
    try:
        with psycopg.connect(url, autocommit=True, connect_timeout=3) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
            proxy.cut()
            time.sleep(0.2)
            with pytest.raises(psycopg.OperationalError):
                conn.execute("SELECT 1")
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(url, connect_timeout=2)
        proxy.blackhole()
        started = time.monotonic()
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(url, connect_timeout=1)  # accepted, then silence
        assert time.monotonic() - started >= 0.9
        proxy.restore()
        with psycopg.connect(url, autocommit=True, connect_timeout=3) as conn:
            assert conn.execute("SELECT 2").fetchone() == (2,)
    finally:
        proxy.close()
