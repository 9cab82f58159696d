"""Shared test configuration.

Test modules under tests/ run on trio unless they opt into asyncio: a coroutine test
function without the asyncio mark gets the trio mark here (pytest-trio with
trio_mode = false, so both plugins share one run; see style-anchors §0.4).
Console tests set a module-level ``pytestmark = pytest.mark.asyncio``.
"""

from __future__ import annotations

import inspect

import pytest
from hypothesis import settings

# No per-example deadline anywhere: speed is measured by the benchmark scripts, not by
# tests, and hypothesis' default 200 ms deadline failed a property test on a shared
# machine at load 15 (tests/protocol/test_hot_path.py, issue 14 session).
settings.register_profile("voltaro", deadline=None)
settings.load_profile("voltaro")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        function = getattr(item, "function", None)
        if function is None or not inspect.iscoroutinefunction(function):
            continue
        if item.get_closest_marker("asyncio") is None and item.get_closest_marker("trio") is None:
            item.add_marker(pytest.mark.trio)


# --- Databases --------------------------------------------------------------------
# Every store test runs on an SQLite file and on PostgreSQL. PostgreSQL tests get a
# fresh database each. In CI (VOLTARO_TEST_REQUIRE_POSTGRES=1) a missing PostgreSQL is
# a failure; locally the tests are skipped with a loud reason.

import os  # noqa: E402
import secrets  # noqa: E402
from collections.abc import Iterator  # noqa: E402
from pathlib import Path  # noqa: E402

from tests.support.databases import migrated  # noqa: E402

POSTGRES_URL = os.environ.get(
    "VOLTARO_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


def _postgres_admin() -> object:
    import psycopg

    url = POSTGRES_URL.replace("postgresql+psycopg://", "postgresql://")
    return psycopg.connect(url, autocommit=True, connect_timeout=3)


@pytest.fixture(scope="session")
def postgres_available() -> bool:
    try:
        conn = _postgres_admin()
    except Exception as exc:  # any connection failure means "not available"
        reason = f"PostgreSQL not reachable at {POSTGRES_URL}: {exc}"
        if os.environ.get("VOLTARO_TEST_REQUIRE_POSTGRES") == "1":
            pytest.fail(reason + " (required: VOLTARO_TEST_REQUIRE_POSTGRES=1)")
        pytest.skip("SKIPPING POSTGRESQL TESTS: " + reason)
    conn.close()  # type: ignore[attr-defined]
    return True


@pytest.fixture
def postgres_url(postgres_available: bool) -> Iterator[str]:
    name = f"voltaro_t_{secrets.token_hex(6)}"
    admin = _postgres_admin()
    admin.execute(f'CREATE DATABASE "{name}"')  # type: ignore[attr-defined]
    base = POSTGRES_URL.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        admin.execute(  # type: ignore[attr-defined]
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,)
        )
        admin.execute(f'DROP DATABASE IF EXISTS "{name}"')  # type: ignore[attr-defined]
        admin.close()  # type: ignore[attr-defined]


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'voltaro.db'}"
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
def db(database_url: str) -> Iterator[object]:
    yield from migrated(database_url)
