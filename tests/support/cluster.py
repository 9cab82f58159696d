"""Several real `voltaro serve --cluster` processes on one PostgreSQL database.

Used by tests/cluster/, scripts/cluster_demo.py and scripts/routed_bench.py. Each node
is a separate process (``python -m voltaro serve``) with its own OCPP port, HTTP port and
control socket on 127.0.0.1, its own TOML file and log file; the database is migrated
ONCE before any node starts (``voltaro db upgrade``: concurrent first migrations from
several nodes race, see docs/scaling.md). Only the PIDs started here are ever signalled.

A node's database traffic can go through a :class:`~tests.support.outage.TcpProxy`
(``proxied=``) so that a test cuts the database for that node alone.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support.outage import TcpProxy

API_TOKEN = "cluster-test-admin-token"  # >= 16 characters (settings._tokens)
START_TIMEOUT = 30.0  # a node's import + start on a loaded 2-core machine


class NodeFailed(RuntimeError):
    """A node exited or did not start in time; the message carries its log's tail."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _toml(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"no TOML for {value!r}")


def _clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VOLTARO_")}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def migrate(database_url: str) -> str:
    """``voltaro db upgrade`` once, before any node starts; returns what it printed."""
    result = subprocess.run(
        [sys.executable, "-m", "voltaro", "db", "upgrade", "--database-url", database_url],
        capture_output=True,
        text=True,
        timeout=120,
        env=_clean_env(),
        check=False,
    )
    if result.returncode != 0:
        raise NodeFailed(f"voltaro db upgrade failed: {result.stderr.strip()}")
    return result.stdout.strip()


TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int | None) -> float:
    """utime + stime of a process and all its threads, in seconds (/proc/<pid>/stat
    fields 14 and 15, the kernel's accounting); 0 once it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (OSError, TypeError):
        return 0.0
    fields = raw[raw.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def own_cpu_seconds() -> float:
    """The CPU this process used (in the scripts: the simulated chargers, the HTTP client)."""
    times = os.times()
    return times.user + times.system


@contextmanager
def scratch_database(postgres_url: str, prefix: str) -> Iterator[tuple[str, str]]:
    """A new, empty database on ``postgres_url``'s server, dropped on exit (its
    connections ended first): yields its name and its SQLAlchemy URL."""
    import psycopg

    admin_url = postgres_url.replace("postgresql+psycopg://", "postgresql://")
    name = f"{prefix}_{secrets.token_hex(4)}"
    with psycopg.connect(admin_url, autocommit=True, connect_timeout=5) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = postgres_url.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://")
    try:
        yield name, f"{url}/{name}"
    finally:
        with psycopg.connect(admin_url, autocommit=True, connect_timeout=5) as admin:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,)
            )
            admin.execute(f'DROP DATABASE IF EXISTS "{name}"')


@dataclass
class Node:
    node_id: str
    index: int
    directory: Path
    database_url: str  # what this node uses (the proxy's URL when proxied)
    settings: dict[str, Any]
    ocpp_port: int = field(default_factory=free_port)
    http_port: int = field(default_factory=free_port)
    proxy: TcpProxy | None = None
    process: subprocess.Popen[bytes] | None = None
    pids: list[int] = field(default_factory=list)  # every PID ever started for this node
    starts: int = 0

    @property
    def url(self) -> str:
        """The OCPP endpoint prefix; a charger appends its id."""
        return f"ws://127.0.0.1:{self.ocpp_port}/ocpp"

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def control_socket(self) -> Path:
        return self.directory / "ctl.sock"

    @property
    def log_path(self) -> Path:
        return self.directory / "node.log"

    @property
    def config_path(self) -> Path:
        return self.directory / "voltaro.toml"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "voltaro",
            "serve",
            "--config",
            str(self.config_path),
            "--cluster",
            "--node-id",
            self.node_id,
        ]

    def write_config(self) -> None:
        values: dict[str, Any] = {
            "host": "127.0.0.1",
            "port": self.ocpp_port,
            "http_host": "127.0.0.1",
            "http_port": self.http_port,
            "database_url": self.database_url,
            "control_socket": str(self.control_socket),
            "data_dir": str(self.directory / "data"),
            "node_address": f"127.0.0.1:{self.ocpp_port}",
            "api_tokens": [{"token": API_TOKEN, "scope": "admin", "name": "cluster-test"}],
            **self.settings,
        }
        self.config_path.write_text(
            "".join(f"{key} = {_toml(value)}\n" for key, value in values.items())
        )

    # --- process control (only this node's own PID) ---------------------------------

    def spawn(self) -> None:
        assert not self.running, f"{self.node_id} is already running"
        self.directory.mkdir(parents=True, exist_ok=True)
        self.write_config()
        self.starts += 1
        with self.log_path.open("ab") as log:
            log.write(f"=== {self.node_id} start #{self.starts}: {self.command()}\n".encode())
            log.flush()
            self.process = subprocess.Popen(
                self.command(),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=_clean_env(),
            )
        self.pids.append(self.process.pid)

    def wait_ready(self, timeout: float = START_TIMEOUT) -> None:
        """Until the HTTP API answers /health/live (it starts after the OCPP listener),
        then one TCP connect to the OCPP port. Not a loop of OCPP connects: each counts
        as a pending handshake from 127.0.0.1 (max_pending_per_ip) until the server sees
        it closed, and 20 of them make the listener refuse the first real charger."""
        deadline = time.monotonic() + timeout
        while True:
            if self.process is None or self.process.poll() is not None:
                code = None if self.process is None else self.process.returncode
                raise NodeFailed(f"{self.node_id} exited with {code}:\n{self.log_tail()}")
            if self._live() and self._accepts():
                return
            if time.monotonic() > deadline:
                raise NodeFailed(f"{self.node_id} not ready in {timeout} s:\n{self.log_tail()}")
            time.sleep(0.05)

    def _accepts(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.ocpp_port), timeout=0.5):
                return True
        except OSError:
            return False

    def _live(self) -> bool:
        try:
            with urllib.request.urlopen(self.http + "/health/live", timeout=1) as response:
                return bool(response.status == 200)
        except (OSError, urllib.error.URLError):
            return False

    def signal(self, signum: int) -> None:
        assert self.process is not None, f"{self.node_id} was never started"
        if self.process.poll() is None:
            os.kill(self.process.pid, signum)

    def kill(self) -> None:
        """SIGKILL (a crash: no drain, no release of its rows) and reap it."""
        self.signal(signal.SIGKILL)
        assert self.process is not None
        self.process.wait(timeout=10)

    def pause(self) -> None:
        """SIGSTOP: a zombie node; the kernel keeps its sockets open."""
        self.signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.signal(signal.SIGCONT)

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM (graceful: closes chargers with 1001), then SIGKILL after ``timeout``."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGCONT)  # a paused node cannot handle SIGTERM
            os.kill(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.kill(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        return self.process.returncode

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    # --- HTTP API (urllib: usable from any thread or event loop via to_thread) ------

    def api(self, method: str, path: str, body: object = None, timeout: float = 30.0) -> Any:
        """(status, parsed JSON body) of one HTTP API request with the admin token."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self.http + path,
            data=data,
            method=method,
            headers={"Authorization": f"Bearer {API_TOKEN}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return response.status, json.loads(response.read() or b"null")
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            try:
                return exc.code, json.loads(raw or b"null")
            except ValueError:
                return exc.code, raw.decode(errors="replace")


class Cluster:
    """N nodes on one database, started and stopped together.

    ``settings``: TOML settings for every node (the harness's defaults below are meant
    for tests: short timeouts, unknown chargers accepted). ``proxied``: node ids whose
    database traffic goes through their own TcpProxy (``cluster.node("n2").proxy``).
    """

    DEFAULTS: dict[str, Any] = {
        "unknown_chargers": "accept",
        "local_list_sync_on_connect": False,
        "call_timeout": 5.0,
        "db_retry_seconds": 2.0,
        "shutdown_grace": 1.0,
        "node_lease_seconds": 6.0,
        "connection_reconcile_interval": 5.0,
        "log_level": "INFO",
    }

    def __init__(
        self,
        database_url: str,
        directory: Path,
        size: int = 3,
        *,
        settings: dict[str, Any] | None = None,
        proxied: Iterable[str] = (),
    ) -> None:
        self.database_url = database_url
        self.directory = directory
        merged = {**self.DEFAULTS, **(settings or {})}
        proxied = set(proxied)
        self.nodes: list[Node] = []
        for i in range(1, size + 1):
            node_id = f"n{i}"
            proxy = None
            url = database_url
            if node_id in proxied:
                host, port = _host_port(database_url)
                proxy = TcpProxy(host, port)
                url = proxy.url_for(database_url)
            self.nodes.append(
                Node(
                    node_id=node_id,
                    index=i - 1,
                    directory=directory / node_id,
                    database_url=url,
                    settings=dict(merged),
                    proxy=proxy,
                )
            )

    def __getitem__(self, index: int) -> Node:
        return self.nodes[index]

    def node(self, node_id: str) -> Node:
        return next(n for n in self.nodes if n.node_id == node_id)

    @property
    def urls(self) -> list[str]:
        return [n.url for n in self.nodes]

    def start(self, nodes: Sequence[Node] | None = None) -> None:
        """Start the nodes together (their start-ups overlap) and wait until each is ready.
        A port taken between free_port() and the node's bind: new ports, one more try."""
        chosen = list(self.nodes if nodes is None else nodes)
        for node in chosen:
            node.spawn()
        for node in chosen:
            try:
                node.wait_ready()
            except NodeFailed:
                if node.starts == 1 and "address already in use" in node.log_text():
                    node.ocpp_port, node.http_port = free_port(), free_port()
                    node.spawn()
                    node.wait_ready()
                else:
                    raise

    def restart(self, node: Node) -> None:
        """Stop it (SIGTERM; SIGKILL if it hangs) unless it is dead, start it on the same
        ports and wait until it is ready."""
        node.stop()
        node.spawn()
        node.wait_ready()

    def stop(self) -> None:
        """Stop every node this cluster started (SIGTERM, then SIGKILL), close proxies."""
        for node in self.nodes:
            if node.running:
                assert node.process is not None
                os.kill(node.process.pid, signal.SIGCONT)
                os.kill(node.process.pid, signal.SIGTERM)
        for node in self.nodes:
            node.stop(timeout=10)
        for node in self.nodes:
            if node.proxy is not None:
                node.proxy.close()

    def sql(self, query: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Rows of one query on the shared database (directly, never through a proxy)."""
        import psycopg

        url = self.database_url.replace("postgresql+psycopg://", "postgresql://")
        with psycopg.connect(url, autocommit=True, connect_timeout=5) as conn:
            cursor = conn.execute(query, params)  # type: ignore[arg-type]
            return list(cursor.fetchall()) if cursor.description else []

    def logs(self, lines: int = 200) -> dict[str, str]:
        return {n.node_id: n.log_tail(lines) for n in self.nodes}


def _host_port(database_url: str) -> tuple[str, int]:
    after = database_url.split("://", 1)[1].rpartition("@")[2]
    hostport = after.split("/", 1)[0]
    host, _, port = hostport.partition(":")
    return host or "127.0.0.1", int(port or 5432)


HAPROXY_EXAMPLE = Path(__file__).resolve().parents[2] / "scripts" / "haproxy" / "haproxy.cfg"


class LoadBalancer:
    """A real HAProxy running the shipped example (scripts/haproxy/haproxy.cfg) in
    front of a cluster's nodes: only the addresses are rewritten (compose's service
    names voltaro-1, voltaro-2, ... become node 1, 2, ... on loopback), and maxconn
    lowered to fit a test machine's open-file limit; ``ocpp_check_inter``: another
    interval for the OCPP backend's health checks (a test that times a failover)."""

    def __init__(
        self, cluster: Cluster, directory: Path, *, ocpp_check_inter: str | None = None
    ) -> None:
        self.cluster = cluster
        self.directory = directory
        self.ocpp_check_inter = ocpp_check_inter
        self.ocpp_port = free_port()
        self.api_port = free_port()
        self.stats_port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.config_path = directory / "haproxy.cfg"
        self.log_path = directory / "haproxy.log"

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.ocpp_port}/ocpp"

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def render(self) -> str:
        text = HAPROXY_EXAMPLE.read_text()
        text = re.sub(r"^(\s+)maxconn \d+$", r"\1maxconn 1000", text, flags=re.M)
        if self.ocpp_check_inter is not None:
            # The OCPP backend's default-server line (the one that shuts sessions down).
            text, count = re.subn(
                r"^(\s+default-server inter )\S+( .*on-marked-down)",
                rf"\g<1>{self.ocpp_check_inter}\2",
                text,
                flags=re.M,
            )
            assert count == 1, "the OCPP backend's check line moved in the example"
        text = text.replace("bind :9000", f"bind 127.0.0.1:{self.ocpp_port}")
        text = text.replace("bind :8080", f"bind 127.0.0.1:{self.api_port}")
        text = text.replace("bind :8404", f"bind 127.0.0.1:{self.stats_port}")
        for node in self.cluster.nodes:
            name = f"voltaro-{node.index + 1}"
            text = text.replace(
                f"{name}:9000 check port 8080",
                f"127.0.0.1:{node.ocpp_port} check port {node.http_port}",
            )
            text = text.replace(f"{name}:8080 check", f"127.0.0.1:{node.http_port} check")
        return text

    def start(self, binary: str = "haproxy") -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(self.render())
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [binary, "-db", "-f", str(self.config_path)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        deadline = time.monotonic() + 10
        while True:
            if self.process.poll() is not None:
                raise NodeFailed(f"haproxy exited:\n{self.log_path.read_text()}")
            try:
                with socket.create_connection(("127.0.0.1", self.stats_port), timeout=0.5):
                    return
            except OSError:
                if time.monotonic() > deadline:
                    raise NodeFailed("haproxy did not listen in 10 s") from None
                time.sleep(0.05)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""
