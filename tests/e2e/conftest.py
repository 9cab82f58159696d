"""The real server (voltaro.app.run) on loopback, on SQLite and PostgreSQL."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trio

from tests.support.ocpp_charger import client_context
from tests.support.pki import Issued, TestCA
from voltaro import app
from voltaro.settings import Settings
from voltaro.store.db import Database


@dataclass
class RunningServer:
    url: str
    settings: Settings
    db: Database  # a second handle on the same database, for assertions and setup
    addresses: app.BoundAddresses

    def run(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        return self.db.run_sync(fn, *args, **kwargs)


def server_settings(database_url: str, tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": 0,
        "database_url": database_url,
        "control_socket": str(tmp_path / "ctl.sock"),
        "data_dir": str(tmp_path / "data"),
        "http_enabled": False,
        "db_retry_seconds": 1.0,
        "shutdown_grace": 1.0,
        "call_timeout": 2.0,
        # Off unless a test is about it: a charger of another test would otherwise get
        # GetConfiguration/GetLocalListVersion it did not script two seconds after boot.
        "local_list_sync_on_connect": False,
    }
    values.update(overrides)
    return Settings(**values)


async def start_server(
    nursery: trio.Nursery, settings: Settings
) -> tuple[RunningServer, trio.Event]:
    stop = trio.Event()
    addresses = await nursery.start(
        lambda task_status: app.run(settings, stop=stop, task_status=task_status)
    )
    db = Database(settings.database_url, pool_size=2)
    server = RunningServer(
        url=f"ws://127.0.0.1:{addresses.ocpp_port}/ocpp",
        settings=settings,
        db=db,
        addresses=addresses,
    )
    return server, stop


@asynccontextmanager
async def serving(
    database_url: str, tmp_path: Path, **overrides: Any
) -> AsyncIterator[RunningServer]:
    """The server with ``server_settings(**overrides)``, stopped on exit (and the test's
    own handle on the database disposed)."""
    async with trio.open_nursery() as nursery:
        running, stop = await start_server(
            nursery, server_settings(database_url, tmp_path, **overrides)
        )
        try:
            yield running
        finally:
            stop.set()
            running.db.dispose()


@pytest.fixture
async def server(database_url: str, tmp_path: Path) -> AsyncIterator[RunningServer]:
    async with serving(database_url, tmp_path) as running:
        yield running


async def eventually(check: Callable[[], Any], within: float = 10.0) -> Any:
    """Poll ``check`` until it returns something truthy, which it returns (no sleeps as
    synchronisation)."""
    with trio.fail_after(within):
        while True:
            result = check()
            if result:
                return result
            await trio.sleep(0.05)


@dataclass
class TlsServer:
    server: RunningServer
    ca: TestCA
    other_ca: TestCA
    server_cert: Issued
    ws_url: str
    wss_url: str

    def client(self, cert: Issued | None = None, **kwargs: Any) -> ssl.SSLContext:
        return client_context(
            self.ca.cert_path, cert.cert if cert else None, cert.key if cert else None, **kwargs
        )


@asynccontextmanager
async def tls_server(
    database_url: str, tmp_path: Path, ca: TestCA | None = None, **overrides: Any
) -> AsyncIterator[TlsServer]:
    """The server with wss:// (a CA made here, a server certificate for 127.0.0.1 and
    the CA as the client CA bundle); ``ca``: that CA, made by the caller; ``overrides``
    are more settings."""
    ca = ca or TestCA(tmp_path / "pki")
    other = TestCA(tmp_path / "other", name="Somebody Else CA")
    server_cert = ca.issue("localhost", "server", server=True)
    values: dict[str, Any] = {
        "tls_port": 0,
        "tls_certfile": str(server_cert.cert),
        "tls_keyfile": str(server_cert.key),
        "tls_client_ca": str(ca.cert_path),
    }
    values.update(overrides)
    settings = server_settings(database_url, tmp_path, **values)
    async with trio.open_nursery() as nursery:
        server, stop = await start_server(nursery, settings)
        port = server.addresses.ocpp_tls_port
        assert port is not None
        try:
            yield TlsServer(
                server,
                ca,
                other,
                server_cert,
                ws_url=server.url,
                wss_url=f"wss://127.0.0.1:{port}/ocpp",
            )
        finally:
            stop.set()
            server.db.dispose()


@pytest.fixture
async def tls(database_url: str, tmp_path: Path) -> AsyncIterator[TlsServer]:
    async with tls_server(database_url, tmp_path) as running:
        yield running
