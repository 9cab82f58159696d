"""Health probes: no token, live while the process answers, ready only with a database."""

from __future__ import annotations

import psycopg
import pytest

from tests.api.conftest import client
from tests.e2e.conftest import RunningServer


async def test_probes_need_no_token(api: tuple[RunningServer, str]) -> None:
    _, base = api
    async with client(base, None) as anonymous:
        live = await anonymous.get("/health/live")
        ready = await anonymous.get("/health/ready")
    assert (live.status_code, live.json()) == (200, {"status": "ok"})
    assert (ready.status_code, ready.json()) == (200, {"status": "ok", "database": "ok"})


@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
async def test_ready_is_503_while_the_database_is_down(api: tuple[RunningServer, str]) -> None:
    server, base = api
    url = server.settings.database_url
    name = url.rsplit("/", 1)[-1]
    admin = psycopg.connect(
        url.rsplit("/", 1)[0].replace("+psycopg", "") + "/test", autocommit=True
    )
    admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
    admin.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,)
    )
    try:
        async with client(base, None) as anonymous:
            ready = await anonymous.get("/health/ready")
            live = await anonymous.get("/health/live")
    finally:
        admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        admin.close()
    assert ready.status_code == 503
    assert ready.json() == {"status": "unavailable", "database": "unreachable"}
    assert live.status_code == 200
    async with client(base, None) as anonymous:
        assert (await anonymous.get("/health/ready")).status_code == 200
