"""Multi-node tests (issue 18): real `voltaro serve --cluster` processes on one throwaway
PostgreSQL database, independent chargers in the test process (tests/support/cluster*.py).

The ``cluster`` fixture gives 3 nodes (``@pytest.mark.nodes(2)`` for another count,
``@pytest.mark.node_settings(**toml)`` for other settings, ``@pytest.mark.proxied("n2")``
to route a node's database traffic through a cuttable proxy). When a test fails, each
node's log is attached to its report. Teardown stops only the processes it started.
"""

from __future__ import annotations

import secrets
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import POSTGRES_URL, _postgres_admin
from tests.support.cluster import Cluster, migrate


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    cluster = getattr(item, "_cluster", None)
    if cluster is not None and report.failed:
        for node_id, text in cluster.logs().items():
            report.sections.append((f"node {node_id} log (last 200 lines)", text))
    balancer = getattr(item, "_balancer", None)
    if balancer is not None and report.failed:
        report.sections.append(("haproxy log", balancer.log_text()[-20000:]))
    return report


@pytest.fixture(scope="session")
def migrated_template(postgres_available: bool) -> Iterator[str]:
    """A database migrated ONCE per session by `voltaro db upgrade`, before any node
    starts; each test's database is a copy of it (CREATE DATABASE ... TEMPLATE), which
    is much faster than migrating each one (seconds per test on a loaded machine)."""
    name = f"voltaro_ct_{secrets.token_hex(6)}"
    admin: Any = _postgres_admin()
    admin.execute(f'CREATE DATABASE "{name}"')
    try:
        migrate(f"{POSTGRES_URL.rsplit('/', 1)[0]}/{name}")
        yield name
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
        admin.close()


@pytest.fixture
def cluster_database(migrated_template: str) -> Iterator[str]:
    """A throwaway database with the current schema, for one test's nodes."""
    name = f"voltaro_t_{secrets.token_hex(6)}"
    admin: Any = _postgres_admin()
    admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{migrated_template}"')
    try:
        yield f"{POSTGRES_URL.rsplit('/', 1)[0]}/{name}"
    finally:
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,)
        )
        admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
        admin.close()


@pytest.fixture
def cluster(request: pytest.FixtureRequest, cluster_database: str) -> Iterator[Cluster]:
    size_mark = request.node.get_closest_marker("nodes")
    settings_mark = request.node.get_closest_marker("node_settings")
    proxied_mark = request.node.get_closest_marker("proxied")
    # A short directory (not tmp_path): a control socket path must fit in 100 bytes.
    directory = Path(tempfile.mkdtemp(prefix="voltaro-cluster-"))
    running = Cluster(
        cluster_database,
        directory,
        size=size_mark.args[0] if size_mark else 3,
        settings=dict(settings_mark.kwargs) if settings_mark else None,
        proxied=proxied_mark.args if proxied_mark else (),
    )
    request.node._cluster = running  # type: ignore[attr-defined]
    try:
        running.start()
        yield running
    finally:
        running.stop()
        shutil.rmtree(directory, ignore_errors=True)
