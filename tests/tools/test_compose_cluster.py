"""compose.cluster.yaml (two nodes on one PostgreSQL behind HAProxy, issue 18) agrees with
the settings the server really loads, with the image and with scripts/haproxy/haproxy.cfg.

Static checks: the containers themselves are not started by the CI container check
(no HAProxy image on a machine without a registry); that check only has podman-compose
resolve the file (scripts/container_check.sh, check_cluster_compose). What the HAProxy
example does with real nodes is tested by tests/cluster/test_load_balancer.py (a real
haproxy process in front of real nodes), and `haproxy -c` checks its syntax here where
haproxy is installed.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

from tests.tools.test_docker_files import COMPOSE, FIELDS, ROOT, _dockerfile_env
from voltaro.cli import _parser
from voltaro.settings import load_settings

CLUSTER_TEXT = (ROOT / "compose.cluster.yaml").read_text()
CLUSTER: dict[str, Any] = yaml.safe_load(CLUSTER_TEXT)
SERVICES: dict[str, Any] = CLUSTER["services"]
NODES = sorted(name for name in SERVICES if name.startswith("voltaro-"))
HAPROXY_CFG = ROOT / "scripts" / "haproxy" / "haproxy.cfg"


def _node_settings(name: str) -> Any:
    """The settings a node container starts with: the image's environment, then the
    service's, then the flags of its command (as `voltaro serve` merges them)."""
    env = {**_dockerfile_env(), **SERVICES[name]["environment"]}
    env = {
        k: str(v).replace("${POSTGRES_PASSWORD:?set POSTGRES_PASSWORD}", "x")
        for k, v in env.items()
    }
    env = {k: v.replace("${VOLTARO_API_TOKENS:-}", "") for k, v in env.items()}
    args = _parser().parse_args(SERVICES[name]["command"])
    assert args.command == "serve"
    overrides = {k: v for k, v in vars(args).items() if k in FIELDS and v is not None}
    return load_settings(environ=env, overrides=overrides)


def test_two_nodes_a_database_a_one_shot_migration_and_haproxy() -> None:
    assert set(SERVICES) == {"postgres", "migrate", "voltaro-1", "voltaro-2", "haproxy"}
    assert NODES == ["voltaro-1", "voltaro-2"]
    assert SERVICES["migrate"]["command"] == ["db", "upgrade"]
    assert SERVICES["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert SERVICES["migrate"]["restart"] == "no"
    for name in NODES:
        # Migrated once, before any node: nodes migrating a fresh database together race.
        assert SERVICES[name]["depends_on"] == {
            "migrate": {"condition": "service_completed_successfully"}
        }
        assert SERVICES[name]["image"] == SERVICES["migrate"]["image"]
        assert (
            SERVICES[name]["healthcheck"]["test"]
            == (COMPOSE["services"]["voltaro"]["healthcheck"]["test"])
        )
        assert "ports" not in SERVICES[name], "nodes are reached through HAProxy only"
    assert "ports" not in SERVICES["postgres"]


def test_each_node_loads_cluster_settings_with_its_own_id() -> None:
    loaded = [_node_settings(name) for name in NODES]
    assert [s.node_id for s in loaded] == NODES
    for settings in loaded:
        assert settings.cluster is True
        assert settings.database_url == "postgresql+psycopg://voltaro:x@postgres:5432/voltaro"
        assert settings.node_address == f"{settings.node_id}:{settings.port}"
        assert settings.max_pending_per_ip >= 1000  # the whole fleet comes from HAProxy
    migrate_url = SERVICES["migrate"]["environment"]["VOLTARO_DATABASE_URL"]
    assert migrate_url == SERVICES["voltaro-1"]["environment"]["VOLTARO_DATABASE_URL"]
    for service in SERVICES.values():
        for name in re.findall(r"\bVOLTARO_([A-Z_]+)\b", str(service.get("environment", {}))):
            assert name.lower() in FIELDS, f"VOLTARO_{name} is not a setting"


def test_haproxy_config_names_every_node_on_its_ports_with_readiness_checks() -> None:
    text = HAPROXY_CFG.read_text()
    settings = _node_settings("voltaro-1")
    mount = SERVICES["haproxy"]["volumes"][0].split(":")
    assert (ROOT / mount[0]).resolve() == HAPROXY_CFG
    assert mount[1] == "/usr/local/etc/haproxy/haproxy.cfg"
    ocpp = re.findall(r"^\s+server (\S+) (\S+):(\d+) check port (\d+)", text, re.M)
    api = re.findall(r"^\s+server (\S+) (\S+):(\d+) check$", text, re.M)
    assert [(n, h, int(p), int(c)) for n, h, p, c in ocpp] == [
        (name, name, settings.port, settings.http_port) for name in NODES
    ]
    assert [(n, h, int(p)) for n, h, p in api] == [
        (name, name, settings.http_port) for name in NODES
    ]
    assert text.count("option httpchk GET /health/ready") == 2
    assert re.search(r"^frontend ocpp\n\s+mode tcp\n\s+bind :9000$", text, re.M)
    assert "option redispatch" in text
    ports = SERVICES["haproxy"]["ports"]
    assert f"{settings.port}:9000" in ports
    assert f"127.0.0.1:{settings.http_port}:8080" in ports
    assert all(p.startswith("127.0.0.1:") for p in ports if not p.startswith("9000:"))


def test_haproxy_accepts_the_config_where_installed(tmp_path: Path) -> None:
    binary = shutil.which("haproxy") or (
        "/usr/sbin/haproxy" if Path("/usr/sbin/haproxy").exists() else None
    )
    if binary is None:
        import pytest

        pytest.skip("SKIPPING haproxy -c: no haproxy binary (apt-get install haproxy)")
    result = subprocess.run(
        [binary, "-c", "-f", str(HAPROXY_CFG)], capture_output=True, text=True, check=False
    )
    # The node names resolve only on the compose network: HAProxy warns and starts them
    # disabled until its resolvers find them (init-addr none), which is what we want.
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Configuration file is valid" in result.stdout + result.stderr
