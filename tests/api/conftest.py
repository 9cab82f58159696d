"""The HTTP API tests' server: a running server with its HTTP API on a free port and
three tokens (read, operate, admin), and a client for it. The running-server fixture is
shared with the end-to-end tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from tests.e2e.conftest import RunningServer, server, server_settings, start_server
from voltaro.settings import ApiScope, ApiToken

__all__ = ["ADMIN", "OPERATE", "READ", "TOKENS", "api", "client", "running_api", "server"]

READ = "read-token-0123456789"
OPERATE = "operate-token-0123456789"
ADMIN = "admin-token-0123456789"
TOKENS = (
    ApiToken(token=READ, scope=ApiScope.READ, name="billing"),
    ApiToken(token=OPERATE, scope=ApiScope.OPERATE, name="ops"),
    ApiToken(token=ADMIN, scope=ApiScope.ADMIN, name="root"),
)


@asynccontextmanager
async def running_api(
    database_url: str, tmp_path: Path, **overrides: Any
) -> AsyncIterator[tuple[RunningServer, str]]:
    """A server with the HTTP API on a free port, and its base URL. ``overrides``:
    settings of the test's own (``api_tokens`` replaces the three tokens)."""
    settings = server_settings(
        database_url,
        tmp_path,
        **{"http_enabled": True, "http_port": 0, "api_tokens": TOKENS, **overrides},
    )
    async with trio.open_nursery() as nursery:
        running, stop = await start_server(nursery, settings)
        assert running.addresses.http is not None
        host, port = running.addresses.http
        try:
            yield running, f"http://{host}:{port}"
        finally:
            stop.set()
            running.db.dispose()


@pytest.fixture
async def api(database_url: str, tmp_path: Path) -> AsyncIterator[tuple[RunningServer, str]]:
    async with running_api(database_url, tmp_path) as running:
        yield running


def client(base: str, token: str | None = READ) -> httpx.AsyncClient:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.AsyncClient(base_url=base, headers=headers, timeout=10)
