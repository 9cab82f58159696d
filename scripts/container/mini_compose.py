"""The few podman-compose commands the container check uses, with plain podman.

scripts/container_check.sh checks compose.yaml with podman-compose; where that cannot be
installed it runs this instead, so the same two containers still start from the same
files. It reads the compose files (merged in order, later files win; ``${VAR}``,
``${VAR:-default}`` and ``${VAR:?message}`` from the environment) and supports what
compose.yaml uses: image, command, environment, named volumes, network_mode (host, or a
project network with service-name aliases), ports, restart, healthcheck,
stop_grace_period and ``depends_on: {service: {condition: service_healthy}}`` (waited for
with ``podman healthcheck run``).

    mini_compose.py -p PROJECT -f compose.yaml [-f override.yaml] up -d [--no-build]
    mini_compose.py -p PROJECT -f ... exec -T SERVICE COMMAND...
    mini_compose.py -p PROJECT -f ... down [-v] [-t SECONDS]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from typing import Any

import yaml

HEALTHY_DEADLINE_S = 120.0
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}")


def interpolate(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: interpolate(v) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v) for v in value]
    if not isinstance(value, str):
        return value

    def one(match: re.Match[str]) -> str:
        name, op, arg = match.group(1), match.group(2), match.group(3) or ""
        current = os.environ.get(name)
        empty = current is None or (op is not None and op.startswith(":") and current == "")
        if op in ("-", ":-"):
            return arg if empty else str(current)
        if op in ("?", ":?"):
            if empty:
                sys.exit(f"mini_compose: {name}: {arg or 'is not set'}")
            return str(current)
        return current or ""

    return _VAR.sub(one, value)


def merge(base: Any, override: Any) -> Any:
    if isinstance(base, dict) and isinstance(override, dict):
        out = dict(base)
        for key, value in override.items():
            out[key] = merge(base[key], value) if key in base else value
        return out
    if isinstance(base, list) and isinstance(override, list):
        return base + [v for v in override if v not in base]
    return override


def load(files: list[str]) -> dict[str, Any]:
    config: dict[str, Any] = {}
    for name in files:
        with open(name) as handle:
            config = merge(config, yaml.safe_load(handle) or {})
    return dict(interpolate(config))


def podman(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(["podman", *args], capture_output=True, text=True, check=False)
    if check and result.returncode != 0:
        sys.exit(f"mini_compose: podman {' '.join(args[:3])}...: {result.stderr.strip()}")
    return result


def start_order(services: dict[str, Any]) -> list[str]:
    order: list[str] = []

    def visit(name: str) -> None:
        if name not in order:
            for dep in services[name].get("depends_on", {}) or {}:
                visit(dep)
            order.append(name)

    for name in services:
        visit(name)
    return order


def _seconds(text: Any) -> str:
    return str(text).rstrip("s")


def run_args(project: str, name: str, service: dict[str, Any], volumes: set[str]) -> list[str]:
    args = ["run", "-d", "--name", f"{project}_{name}_1", "--cgroups=enabled"]
    args += ["--label", f"io.podman.compose.project={project}"]
    if service.get("network_mode") == "host":
        args += ["--network", "host"]
    else:
        args += ["--network", f"{project}_default", "--network-alias", name]
        args += [x for port in service.get("ports", []) for x in ("-p", str(port))]
    env = service.get("environment", {}) or {}
    items = env.items() if isinstance(env, dict) else (e.split("=", 1) for e in env)
    args += [x for key, value in items for x in ("-e", f"{key}={value}")]
    for mount in service.get("volumes", []):
        source, _, target = str(mount).partition(":")
        args += ["-v", f"{project}_{source}:{target}" if source in volumes else str(mount)]
    if service.get("restart"):
        args += ["--restart", str(service["restart"])]
    if service.get("stop_grace_period"):
        args += ["--stop-timeout", _seconds(service["stop_grace_period"])]
    check = service.get("healthcheck") or {}
    if check.get("test"):
        test = check["test"]
        if isinstance(test, list) and test[0] == "CMD":
            args += ["--health-cmd", json.dumps(test[1:])]
        elif isinstance(test, list) and test[0] == "CMD-SHELL":
            args += ["--health-cmd", str(test[1])]
        else:
            args += ["--health-cmd", str(test)]
        for key, flag in (
            ("interval", "interval"),
            ("timeout", "timeout"),
            ("retries", "retries"),
            ("start_period", "start-period"),
        ):
            if key in check:
                args += [f"--health-{flag}", str(check[key])]
    args.append(str(service["image"]))
    command = service.get("command")
    if command:
        args += [str(c) for c in command] if isinstance(command, list) else str(command).split()
    return args


def wait_healthy(container: str) -> None:
    deadline = time.monotonic() + HEALTHY_DEADLINE_S
    while time.monotonic() < deadline:
        if podman("healthcheck", "run", container, check=False).returncode == 0:
            return
        time.sleep(1)
    sys.exit(f"mini_compose: {container} not healthy within {HEALTHY_DEADLINE_S:.0f} s")


def up(project: str, config: dict[str, Any]) -> None:
    services = config["services"]
    volumes = set(config.get("volumes") or {})
    for volume in sorted(volumes):
        name = f"{project}_{volume}"
        if podman("volume", "exists", name, check=False).returncode != 0:
            podman("volume", "create", "--label", f"io.podman.compose.project={project}", name)
    bridged = any(s.get("network_mode") != "host" for s in services.values())
    if bridged and podman("network", "exists", f"{project}_default", check=False).returncode:
        podman("network", "create", f"{project}_default")
    for name in start_order(services):
        for dep, rule in (services[name].get("depends_on", {}) or {}).items():
            if isinstance(rule, dict) and rule.get("condition") == "service_healthy":
                wait_healthy(f"{project}_{dep}_1")
        podman(*run_args(project, name, services[name], volumes))
        print(f"{project}_{name}_1")


def down(project: str, config: dict[str, Any], *, volumes: bool, timeout: str) -> None:
    for name in reversed(start_order(config["services"])):
        container = f"{project}_{name}_1"
        podman("stop", "-t", timeout, container, check=False)
        podman("rm", "-f", "-v", container, check=False)
    podman("network", "rm", f"{project}_default", check=False)
    if volumes:
        for volume in config.get("volumes") or {}:
            podman("volume", "rm", "-f", f"{project}_{volume}", check=False)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-p", dest="project", required=True)
    parser.add_argument("-f", dest="files", action="append", required=True)
    commands = parser.add_subparsers(dest="command", required=True)
    up_parser = commands.add_parser("up")
    up_parser.add_argument("-d", action="store_true", required=True)
    up_parser.add_argument("--no-build", action="store_true")
    down_parser = commands.add_parser("down")
    down_parser.add_argument("-v", dest="volumes", action="store_true")
    down_parser.add_argument("-t", dest="timeout", default="10")
    exec_parser = commands.add_parser("exec")
    exec_parser.add_argument("-T", action="store_true")
    exec_parser.add_argument("service")
    exec_parser.add_argument("argv", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    config = load(args.files)
    if args.command == "up":
        up(args.project, config)
    elif args.command == "down":
        down(args.project, config, volumes=args.volumes, timeout=args.timeout)
    else:
        result = subprocess.run(
            ["podman", "exec", f"{args.project}_{args.service}_1", *args.argv], check=False
        )
        return result.returncode
    return 0


if __name__ == "__main__":
    sys.exit(main())
