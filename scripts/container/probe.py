"""Check a built Voltaro image from outside, the way an operator and a charger see it.

Run by scripts/container_check.sh (which builds the image); usable alone:

    .venv/bin/python scripts/container/probe.py --image localhost/voltaro:check sqlite
    .venv/bin/python scripts/container/probe.py --image localhost/voltaro:check postgres \
        --postgres-admin-url postgresql://postgres@127.0.0.1:5432/postgres

One scenario = one container on the host network (loopback ports picked free), named
volumes for the data and the control socket, and these checks, each failing loudly:

- it becomes ready (GET /health/ready) and the start time is printed;
- the image's HEALTHCHECK passes (`podman healthcheck run`) and `voltaro ctl status`
  works inside (`podman exec`);
- the server process runs as uid/gid 10001, not root (read from /proc on the host);
- a charger registered with `voltaro ctl` boots over WebSocket with the `ocpp` library's
  own ChargePoint (independent of the server's adapter) and charges one session;
- the session's energy is read back over the HTTP API, still the same after the container
  is removed and a new one started on the same volumes;
- SIGTERM (`podman stop`) with a charger connected stops it within the grace period with
  exit status 0 (not killed);
- on PostgreSQL: a fresh database, migrated at start (alembic_version), dropped after.

Only loopback traffic: every port is bound to 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import websockets
from ocpp.v16 import ChargePoint, call

CHARGER_ID = "CP-CONTAINER-1"
ID_TAG = "TAG-CONTAINER"
METER_START_WH = 1000
METER_STOP_WH = 8500
UID = 10001
STOP_TIMEOUT_S = 10  # what docs/docker.md tells operators to give `docker stop -t`
READY_DEADLINE_S = 90.0


class CheckFailed(Exception):
    pass


def say(text: str) -> None:
    print(f"container-check: {text}", flush=True)


def podman(
    *args: str, check: bool = True, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        ["podman", *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and result.returncode != 0:
        raise CheckFailed(
            f"podman {' '.join(args)} exited {result.returncode}: "
            f"{result.stderr.strip() or result.stdout.strip()}"
        )
    return result


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def poll(what: str, deadline_s: float, probe: Callable[[], Any]) -> Any:
    """Call probe until it returns something truthy, or fail after deadline_s."""
    end = time.monotonic() + deadline_s
    last: object = None
    while time.monotonic() < end:
        try:
            value = probe()
        except CheckFailed:
            raise
        except Exception as exc:  # the server is not up yet: keep polling
            last = exc
        else:
            if value:
                return value
        time.sleep(0.2)
    raise CheckFailed(f"{what}: not within {deadline_s:.0f} s (last: {last!r})")


@dataclass
class Container:
    """One `voltaro serve` container on the host network, with its volumes."""

    image: str
    name: str
    data_volume: str
    run_volume: str
    database_url: str | None
    token: str = field(default_factory=lambda: secrets.token_hex(16))
    ocpp_port: int = field(default_factory=free_port)
    http_port: int = field(default_factory=free_port)

    def start(self) -> float:
        """Start it; return the seconds until /health/ready answered 200."""
        env = {
            # Host network: bind to loopback only, never to the machine's other interfaces.
            "VOLTARO_HOST": "127.0.0.1",
            "VOLTARO_PORT": str(self.ocpp_port),
            "VOLTARO_HTTP_HOST": "127.0.0.1",
            "VOLTARO_HTTP_PORT": str(self.http_port),
            "VOLTARO_API_TOKENS": f"read:{self.token}",
        }
        if self.database_url:
            env["VOLTARO_DATABASE_URL"] = self.database_url
        args = ["run", "-d", "--name", self.name, "--network", "host", "--cgroups=enabled"]
        if not Path("/run/systemd/private").exists():
            # Podman schedules health checks with systemd timers; without systemd we run
            # the image's check ourselves (`podman healthcheck run`).
            args.append("--health-interval=disable")
        args += ["-v", f"{self.data_volume}:/var/lib/voltaro"]
        args += ["-v", f"{self.run_volume}:/run/voltaro"]
        for key, value in env.items():
            args += ["-e", f"{key}={value}"]
        started = time.monotonic()
        podman(*args, self.image)
        poll("ready (GET /health/ready)", READY_DEADLINE_S, self._ready)
        return time.monotonic() - started

    def _ready(self) -> bool:
        if not self.running():
            raise CheckFailed(f"{self.name} exited during start:\n{self.logs()}")
        return self.http("/health/ready", token=None).get("status") == "ok"

    def running(self) -> bool:
        state = podman("inspect", "--format", "{{.State.Running}}", self.name).stdout.strip()
        return state == "true"

    def logs(self) -> str:
        result = podman("logs", "--tail", "40", self.name, check=False)
        return result.stdout + result.stderr

    def http(self, path: str, *, token: str | None = "") -> Any:
        request = urllib.request.Request(f"http://127.0.0.1:{self.http_port}{path}")
        if token is not None:
            request.add_header("Authorization", f"Bearer {token or self.token}")
        with urllib.request.urlopen(request, timeout=5) as response:
            return json.loads(response.read())

    def ctl(self, *args: str) -> str:
        return podman("exec", self.name, "voltaro", "ctl", *args).stdout

    def stop(self) -> tuple[float, int]:
        """SIGTERM (the image's STOPSIGNAL) via `podman stop`; return (seconds, exit code)."""
        started = time.monotonic()
        podman("stop", "-t", str(STOP_TIMEOUT_S), self.name, timeout=STOP_TIMEOUT_S + 30)
        elapsed = time.monotonic() - started
        code = podman("inspect", "--format", "{{.State.ExitCode}}", self.name).stdout.strip()
        return elapsed, int(code)

    def remove(self) -> None:
        podman("rm", "-f", "-t", "0", self.name, check=False)


# --- the charger: the ocpp library's own asyncio ChargePoint over websockets ----------


class Charger(ChargePoint):  # type: ignore[misc]
    pass


@contextlib.asynccontextmanager
async def charger(port: int) -> Any:
    async with websockets.connect(
        f"ws://127.0.0.1:{port}/ocpp/{CHARGER_ID}",
        subprotocols=["ocpp1.6"],  # type: ignore[list-item]
    ) as ws:
        cp = Charger(CHARGER_ID, ws, response_timeout=15)
        reader = asyncio.ensure_future(cp.start())
        try:
            yield cp
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reader


async def boot(cp: Any) -> None:
    result = await cp.call(
        call.BootNotification(charge_point_vendor="Voltaro", charge_point_model="ContainerCheck")
    )
    if result.status != "Accepted":
        raise CheckFailed(f"BootNotification answered {result.status}, expected Accepted")


async def charge_one_session(port: int) -> int:
    async with charger(port) as cp:
        await boot(cp)
        await cp.call(
            call.StatusNotification(connector_id=1, error_code="NoError", status="Available")
        )
        auth = await cp.call(call.Authorize(id_tag=ID_TAG))
        if auth.id_tag_info["status"] != "Accepted":
            raise CheckFailed(f"Authorize answered {auth.id_tag_info}")
        started = await cp.call(
            call.StartTransaction(
                connector_id=1, id_tag=ID_TAG, meter_start=METER_START_WH, timestamp=now()
            )
        )
        tx = int(started.transaction_id)
        await cp.call(
            call.MeterValues(
                connector_id=1,
                transaction_id=tx,
                meter_value=[
                    {
                        "timestamp": now(),
                        "sampled_value": [
                            {
                                "value": str((METER_START_WH + METER_STOP_WH) // 2),
                                "measurand": "Energy.Active.Import.Register",
                                "unit": "Wh",
                            }
                        ],
                    }
                ],
            )
        )
        await cp.call(
            call.StopTransaction(
                transaction_id=tx, meter_stop=METER_STOP_WH, timestamp=now(), id_tag=ID_TAG
            )
        )
        return tx


async def stop_while_connected(container: Container) -> tuple[float, int]:
    """SIGTERM while a charger is connected: the server must still exit by itself."""
    async with charger(container.ocpp_port) as cp:
        await boot(cp)
        return await asyncio.to_thread(container.stop)


# --- the scenario ------------------------------------------------------------------------


def check_session(container: Container, tx: int, when: str) -> None:
    session = container.http(f"/sessions/{tx}")
    expected = METER_STOP_WH - METER_START_WH
    if session.get("energy_wh") != expected or session.get("state") == "active":
        raise CheckFailed(f"{when}: session {tx} is {session}, expected {expected} Wh stopped")
    say(f"{when}: session {tx} stored with {session['energy_wh']} Wh (GET /sessions/{tx})")


def check_process_user(container: Container) -> None:
    pid = podman("inspect", "--format", "{{.State.Pid}}", container.name).stdout.strip()
    status = Path(f"/proc/{pid}/status").read_text()
    uids = next(line.split()[1:] for line in status.splitlines() if line.startswith("Uid:"))
    gids = next(line.split()[1:] for line in status.splitlines() if line.startswith("Gid:"))
    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    if set(uids) != {str(UID)} or set(gids) != {str(UID)}:
        raise CheckFailed(f"process {pid} ({cmdline}) runs as uid {uids} gid {gids}")
    say(f"the server process ({cmdline}, host pid {pid}) runs as uid/gid {UID}, not root")


def check_inside(container: Container) -> None:
    health = podman("healthcheck", "run", container.name, check=False)
    if health.returncode != 0:
        raise CheckFailed(f"the image's HEALTHCHECK failed: {health.stdout}{health.stderr}")
    say("the image's HEALTHCHECK passes (podman healthcheck run)")
    status = json.loads(container.ctl("--json", "status"))
    say(f"voltaro ctl status inside: {json.dumps(status)[:160]}")


def check_stop(elapsed: float, code: int, *, how: str) -> None:
    if code != 0:
        raise CheckFailed(f"SIGTERM: exit status {code} (137 = killed after {STOP_TIMEOUT_S} s)")
    if elapsed >= STOP_TIMEOUT_S:
        raise CheckFailed(f"SIGTERM: took {elapsed:.1f} s, the grace period is {STOP_TIMEOUT_S} s")
    say(f"SIGTERM {how}: exited 0 after {elapsed:.1f} s (grace period {STOP_TIMEOUT_S} s)")


def check_migrated(admin_url: str, database: str) -> None:
    import psycopg

    with psycopg.connect(_on_database(admin_url, database)) as conn:
        row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
    if not row:
        raise CheckFailed(f"database {database} has no alembic_version row")
    say(f"PostgreSQL database {database} migrated at start (alembic_version {row[0]})")


def _on_database(admin_url: str, database: str) -> str:
    return admin_url.rsplit("/", 1)[0] + "/" + database


@contextlib.contextmanager
def fresh_postgres_database(admin_url: str) -> Iterator[str]:
    import psycopg

    name = f"voltaro_container_{secrets.token_hex(4)}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    say(f"created PostgreSQL database {name}")
    try:
        yield name
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        say(f"dropped PostgreSQL database {name}")


def scenario(image: str, database: str, admin_url: str) -> None:
    tag = f"voltaro-check-{database}-{os.getpid()}"
    volumes = (f"{tag}-data", f"{tag}-run")
    containers: list[Container] = []
    with contextlib.ExitStack() as cleanup:
        url = None
        db_name = ""
        if database == "postgres":
            db_name = cleanup.enter_context(fresh_postgres_database(admin_url))
            url = "postgresql+psycopg://" + _on_database(admin_url, db_name).split("://", 1)[1]
        for volume in volumes:
            podman("volume", "create", volume)
            cleanup.callback(podman, "volume", "rm", "-f", volume, check=False)
        cleanup.callback(lambda: [c.remove() for c in containers])

        first = Container(image, f"{tag}-1", *volumes, database_url=url)
        containers.append(first)
        try:
            seconds = first.start()
            say(f"[{database}] ready {seconds:.1f} s after `podman run` (GET /health/ready)")
            if database == "postgres":
                check_migrated(admin_url, db_name)
            check_inside(first)
            check_process_user(first)
            first.ctl("chargers", "add", CHARGER_ID)
            first.ctl("tags", "add", ID_TAG)
            tx = asyncio.run(charge_one_session(first.ocpp_port))
            say(f"charger {CHARGER_ID} booted (Accepted) and charged session {tx}")
            check_session(first, tx, "before restart")
            check_stop(*asyncio.run(stop_while_connected(first)), how="with a charger connected")
        except Exception:
            say(f"logs of {first.name}:\n{first.logs()}")
            raise
        first.remove()

        second = Container(image, f"{tag}-2", *volumes, database_url=url)
        containers.append(second)
        try:
            seconds = second.start()
            say(f"[{database}] new container on the same volumes ready in {seconds:.1f} s")
            check_session(second, tx, "after restart")
            check_stop(*second.stop(), how="idle")
        except Exception:
            say(f"logs of {second.name}:\n{second.logs()}")
            raise
    say(f"[{database}] all checks passed")


# --- compose.yaml ----------------------------------------------------------------------


@dataclass
class ComposeProject:
    """compose.yaml plus scripts/container/compose.check.yaml, run by podman-compose."""

    podman_compose: list[str]
    files: tuple[str, ...]
    image: str
    project: str = field(default_factory=lambda: f"voltaro-check-compose-{os.getpid()}")
    env: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.token = secrets.token_hex(16)
        self.ocpp_port, self.http_port, self.pg_port = free_port(), free_port(), free_port()
        self.env = {
            **os.environ,
            "CHECK_IMAGE": self.image,
            "CHECK_OCPP_PORT": str(self.ocpp_port),
            "CHECK_HTTP_PORT": str(self.http_port),
            "CHECK_PG_PORT": str(self.pg_port),
            "POSTGRES_PASSWORD": secrets.token_hex(16),
            "VOLTARO_API_TOKENS": f"read:{self.token}",
        }

    def __call__(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        command = [*self.podman_compose, "-p", self.project]
        for name in self.files:
            command += ["-f", name]
        result = subprocess.run(
            [*command, *args],
            capture_output=True,
            text=True,
            env=self.env,
            timeout=180,
            check=False,
        )
        if check and result.returncode != 0:
            raise CheckFailed(
                f"podman-compose {' '.join(args)} exited {result.returncode}: "
                f"{result.stderr.strip()[-2000:]}"
            )
        return result

    def container(self, service: str) -> str:
        return f"{self.project}_{service}_1"

    def as_container(self) -> Container:
        """The voltaro service seen through the single-container helpers."""
        volume = f"{self.project}_voltaro-run"
        c = Container(self.image, self.container("voltaro"), "", volume, None, token=self.token)
        c.ocpp_port, c.http_port = self.ocpp_port, self.http_port
        return c

    def wait_ready(self) -> float:
        started = time.monotonic()
        voltaro = self.as_container()
        # podman 4.3 cannot wait for `condition: service_healthy` (podman-compose says so and
        # starts Voltaro at once); Voltaro then exits while PostgreSQL initialises and the
        # restart policy brings it back. So: poll from outside, restarts allowed.
        poll(
            "compose: Voltaro ready",
            READY_DEADLINE_S,
            lambda: voltaro.http("/health/ready", token=None).get("status") == "ok",
        )
        return time.monotonic() - started


def compose_scenario(image: str, podman_compose: str, files: tuple[str, ...]) -> None:
    runner = [podman_compose]
    if not podman_compose:  # no podman-compose here: the same containers with plain podman
        runner = [sys.executable, str(Path(__file__).with_name("mini_compose.py"))]
    project = ComposeProject(runner, files, image)
    voltaro = project.as_container()
    say(f"compose: {' + '.join(files)} as project {project.project} ({' '.join(runner)})")
    try:
        project("up", "-d", "--no-build")
        seconds = project.wait_ready()
        say(f"[compose] Voltaro ready {seconds:.1f} s after `up -d`")
        for service in ("postgres", "voltaro"):
            health = podman("healthcheck", "run", project.container(service), check=False)
            if health.returncode != 0:
                raise CheckFailed(f"compose: health check of {service}: {health.stdout}")
        say("[compose] the health checks of both services pass")
        version = project(
            "exec",
            "-T",
            "postgres",
            "psql",
            "-U",
            "voltaro",
            "-d",
            "voltaro",
            "-Atc",
            "SELECT version_num FROM alembic_version",
        ).stdout.strip()
        say(f"[compose] PostgreSQL migrated at start (alembic_version {version})")
        project("exec", "-T", "voltaro", "voltaro", "ctl", "chargers", "add", CHARGER_ID)
        project("exec", "-T", "voltaro", "voltaro", "ctl", "tags", "add", ID_TAG)
        say("[compose] `podman-compose exec voltaro voltaro ctl ...` registered a charger")
        # From the host: the control socket is on the named volume.
        mountpoint = podman(
            "volume", "inspect", "--format", "{{.Mountpoint}}", f"{project.project}_voltaro-run"
        ).stdout.strip()
        socket_path = f"{mountpoint}/control.sock"
        host_ctl = subprocess.run(
            [
                sys.executable,
                "-m",
                "voltaro",
                "ctl",
                "--socket",
                socket_path,
                "--json",
                "chargers",
                "list",
            ],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        if host_ctl.returncode != 0 or CHARGER_ID not in host_ctl.stdout:
            raise CheckFailed(f"compose: ctl from the host over {socket_path}: {host_ctl}")
        say(f"[compose] the host attached to the control socket on the volume ({socket_path})")
        check_process_user(voltaro)
        tx = asyncio.run(charge_one_session(project.ocpp_port))
        say(f"[compose] charger {CHARGER_ID} booted (Accepted) and charged session {tx}")
        check_session(voltaro, tx, "[compose] before down")
        project("down", "-t", str(STOP_TIMEOUT_S))
        project("up", "-d", "--no-build")
        project.wait_ready()
        check_session(voltaro, tx, "[compose] after down and up (named volumes kept)")
        check_stop(*voltaro.stop(), how="[compose] idle")
    except Exception:
        for service in ("postgres", "voltaro"):
            logs = podman("logs", "--tail", "30", project.container(service), check=False)
            say(f"logs of {service}:\n{logs.stdout}{logs.stderr}")
        raise
    finally:
        project("down", "-v", "-t", "0", check=False)
    say("[compose] all checks passed")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--image", required=True)
    parser.add_argument(
        "--postgres-admin-url",
        default=os.environ.get("VOLTARO_CHECK_POSTGRES_ADMIN_URL")
        or "postgresql://postgres@127.0.0.1:5432/postgres",
        help="a superuser connection used to create and drop the check's database",
    )
    parser.add_argument(
        "--podman-compose",
        default="podman-compose",
        help="its path; empty: start the same containers with scripts/container/mini_compose.py",
    )
    parser.add_argument(
        "--compose-file", action="append", default=[], help="compose files, in order"
    )
    parser.add_argument("scenario", choices=["sqlite", "postgres", "compose"])
    args = parser.parse_args()
    try:
        if args.scenario == "compose":
            compose_scenario(args.image, args.podman_compose, tuple(args.compose_file))
        else:
            scenario(args.image, args.scenario, args.postgres_admin_url)
    except CheckFailed as exc:
        say(f"FAILED [{args.scenario}]: {exc}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
