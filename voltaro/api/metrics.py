"""``GET /metrics``: the server's Prometheus metrics (voltaro/service/metrics.py).

Access (docs/metrics.md): a bearer token from api_tokens, checked by the guard like
every other path. A token of scope ``metrics`` may read this path and nothing else (the
guard answers 403 elsewhere), so the secret in Prometheus' configuration reads no id
tags or sessions; read, operate and admin tokens may read it too. Not in the OpenAPI
document: the body is Prometheus' text format, not JSON.
"""

from __future__ import annotations

from fastapi import FastAPI, Response

from voltaro.api.guard import METRICS_PATH
from voltaro.service.metrics import CONTENT_TYPE, ServerMetrics


def add_metrics(app: FastAPI, metrics: ServerMetrics | None) -> None:
    if metrics is None:  # an API built without a server (some tests): no such path
        return

    @app.get(METRICS_PATH, include_in_schema=False)
    async def scrape() -> Response:
        return Response(await metrics.exposition(), media_type=CONTENT_TYPE)
