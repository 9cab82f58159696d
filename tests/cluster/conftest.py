"""Multi-node tests (issue 18): real `voltaro serve --cluster` processes on one throwaway
PostgreSQL database, independent chargers in the test process (tests/support/cluster*.py).

The ``cluster`` fixture gives 3 nodes (``@pytest.mark.nodes(2)`` for another count,
``@pytest.mark.node_settings(**toml)`` for other settings, ``@pytest.mark.proxied("n2")``
to route a node's database traffic through a cuttable proxy). When a test fails, each
node's log is attached to its report. Teardown stops only the processes it started.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

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


@pytest.fixture
def cluster(request: pytest.FixtureRequest, postgres_url: str) -> Iterator[Cluster]:
    size_mark = request.node.get_closest_marker("nodes")
    settings_mark = request.node.get_closest_marker("node_settings")
    proxied_mark = request.node.get_closest_marker("proxied")
    migrate(postgres_url)  # once, before any node starts
    # A short directory (not tmp_path): a control socket path must fit in 100 bytes.
    directory = Path(tempfile.mkdtemp(prefix="voltaro-cluster-"))
    running = Cluster(
        postgres_url,
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
