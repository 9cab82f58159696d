"""Make the test's database unavailable and bring it back, without touching the shared
PostgreSQL server: SQLite is write-locked by a second connection (BEGIN EXCLUSIVE);
a PostgreSQL test database refuses new connections and its sessions are terminated."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg


class Outage:
    def __init__(self, url: str) -> None:
        self.url = url
        self._lock: sqlite3.Connection | None = None
        self._admin: Any = None

    @property
    def sqlite(self) -> bool:
        return self.url.startswith("sqlite")

    def start(self) -> None:
        if self.sqlite:
            self._lock = sqlite3.connect(self.url.removeprefix("sqlite:///"), isolation_level=None)
            self._lock.execute("BEGIN EXCLUSIVE")
            return
        name = self.url.rsplit("/", 1)[-1]
        base = self.url.rsplit("/", 1)[0].replace("+psycopg", "")
        self._admin = psycopg.connect(base + "/test", autocommit=True)
        self._admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        self._admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,)
        )

    def end(self) -> None:
        if self._lock is not None:
            self._lock.execute("ROLLBACK")
            self._lock.close()
            self._lock = None
        if self._admin is not None:
            name = self.url.rsplit("/", 1)[-1]
            self._admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
            self._admin.close()
            self._admin = None

    @property
    def is_sqlite(self) -> bool:
        return self.sqlite


@contextmanager
def database_outage(database_url: str) -> Iterator[Outage]:
    """The database unavailable for the body of a ``with`` block."""
    outage = Outage(database_url)
    outage.start()
    try:
        yield outage
    finally:
        outage.end()


class TcpProxy:
    """A TCP forwarder on 127.0.0.1 that a test can cut: one node's database traffic
    goes through it (its database_url names the proxy's port) while the other nodes
    talk to PostgreSQL directly, so only that node loses the database.

    Modes: ``forward``; ``cut`` (every open connection is closed and new ones are
    accepted then closed at once: a refused, reset database); ``blackhole`` (both TCP
    ends stay open and every byte is dropped: a silent network partition, which only
    keepalives and timeouts notice). One thread with a selector, so it works beside
    trio, asyncio or plain threads, and outside of any of them (scripts).
    """

    def __init__(self, target_host: str, target_port: int) -> None:
        import selectors
        import socket
        import threading

        self.target = (target_host, target_port)
        self.mode = "forward"
        self.accepted = 0  # connections accepted while forwarding (the node did connect)
        self._selectors = selectors
        self._socket = socket
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.setblocking(False)
        self.port: int = self._listener.getsockname()[1]
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._listener, selectors.EVENT_READ, None)
        self._peers: dict[Any, Any] = {}  # socket -> the socket at the other end
        self._lock = threading.Lock()
        self._stop = False
        self._wake_r, self._wake_w = socket.socketpair()
        self._selector.register(self._wake_r, selectors.EVENT_READ, "wake")
        self._thread = threading.Thread(target=self._loop, name="tcp-proxy", daemon=True)
        self._thread.start()

    def url_for(self, database_url: str) -> str:
        """``database_url`` with its host and port replaced by the proxy's."""
        scheme, rest = database_url.split("://", 1)
        credentials, _, after = rest.rpartition("@")
        path = after.split("/", 1)[1]
        user = f"{credentials}@" if credentials else ""
        return f"{scheme}://{user}127.0.0.1:{self.port}/{path}"

    def cut(self) -> None:
        """Close every connection; refuse (accept and close) new ones until restore()."""
        self._set_mode("cut")

    def blackhole(self) -> None:
        """Keep every connection open but drop every byte until restore()."""
        self._set_mode("blackhole")

    def restore(self) -> None:
        """Forward again (connections cut before stay closed; blackholed ones resume)."""
        self._set_mode("forward")

    def close(self) -> None:
        self._stop = True
        self._wake()
        self._thread.join(timeout=5)
        with self._lock:
            for sock in list(self._peers):
                sock.close()
            self._peers.clear()
        self._listener.close()
        self._wake_r.close()
        self._wake_w.close()
        self._selector.close()

    def _set_mode(self, mode: str) -> None:
        with self._lock:
            self.mode = mode
        self._wake()

    def _wake(self) -> None:
        try:
            self._wake_w.send(b"x")
        except OSError:
            pass

    def _drop(self, sock: Any) -> None:
        other = self._peers.pop(sock, None)
        for s in (sock, other):
            if s is None:
                continue
            self._peers.pop(s, None)
            try:
                self._selector.unregister(s)
            except (KeyError, ValueError):
                pass
            s.close()

    def _loop(self) -> None:
        while not self._stop:
            with self._lock:
                mode = self.mode
            if mode == "cut" and self._peers:
                for sock in list(self._peers):
                    self._drop(sock)
            for key, _ in self._selector.select(timeout=0.5):
                with self._lock:
                    mode = self.mode  # a restore() that woke this select counts now
                if key.data == "wake":
                    self._wake_r.recv(4096)
                    continue
                if key.fileobj is self._listener:
                    self._accept(mode)
                    continue
                sock = key.fileobj
                if sock not in self._peers:
                    continue
                try:
                    data = sock.recv(65536)  # type: ignore[union-attr]
                except OSError:
                    data = b""
                if not data:
                    self._drop(sock)
                    continue
                if mode == "blackhole":
                    continue  # dropped: the sender believes it was sent
                if self._peers[sock] is None:  # accepted while blackholed: never connected
                    self._drop(sock)
                    continue
                try:
                    self._peers[sock].sendall(data)
                except OSError:
                    self._drop(sock)

    def _accept(self, mode: str) -> None:
        try:
            client, _ = self._listener.accept()
        except OSError:
            return
        if mode == "cut":
            client.close()
            return
        if mode == "blackhole":
            # Accepted and then silent: the connect succeeds, the startup packet is lost.
            client.setblocking(False)
            self._peers[client] = None
            self._selector.register(client, self._selectors.EVENT_READ, None)
            return
        try:
            upstream = self._socket.create_connection(self.target, timeout=3)
        except OSError:
            client.close()
            return
        self.accepted += 1
        client.setblocking(True)
        upstream.setblocking(True)
        self._peers[client] = upstream
        self._peers[upstream] = client
        self._selector.register(client, self._selectors.EVENT_READ, None)
        self._selector.register(upstream, self._selectors.EVENT_READ, None)
