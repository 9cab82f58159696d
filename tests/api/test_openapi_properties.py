"""Property-based run of the OpenAPI document against a real `voltaro serve` process:
no generated request may produce a server error (502/504 are the documented answers of
a charger that fails or times out, and cannot occur here: no charger is connected)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from voltaro.api.routes import ApiContext, create_app
from voltaro.settings import Settings

TOKEN = "operate-token-for-fuzzing-0123"
_spec = create_app(
    ApiContext(
        settings=Settings(),
        db=None,
        registry=None,  # type: ignore[arg-type]
        commands=None,
    )
).openapi()  # type: ignore[arg-type]
schema = schemathesis.openapi.from_dict(_spec)


@pytest.fixture(scope="module")
def base_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    tmp: Path = tmp_path_factory.mktemp("fuzz")
    env = {
        **os.environ,
        "VOLTARO_API_TOKENS": f"operate:{TOKEN}",
        "VOLTARO_UNKNOWN_CHARGERS": "reject",
    }
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "voltaro",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--http-port",
            "0",
            "--database-url",
            f"sqlite:///{tmp / 'v.db'}",
            "--control-socket",
            str(tmp / "c.sock"),
        ],
        stderr=subprocess.PIPE,
        env=env,
        text=True,
    )
    assert process.stderr is not None
    deadline = time.monotonic() + 30
    url = None
    while url is None and time.monotonic() < deadline:
        line = process.stderr.readline()
        if not line:
            break
        match = re.search(r"HTTP API on (http://\S+)", line)
        if match:
            url = match.group(1)
    assert url, "the server did not report its HTTP address"
    try:
        yield url
    finally:
        process.terminate()
        process.wait(timeout=15)
        process.stderr.close()


@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_server_errors(case: Any, base_url: str) -> None:
    response = case.call(base_url=base_url, headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code < 500, (response.status_code, response.text[:300])
