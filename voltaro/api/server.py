"""The HTTP API server: Hypercorn's trio worker in the server's own nursery."""

from __future__ import annotations

import logging
from urllib.parse import urlsplit

import trio
from hypercorn.config import Config
from hypercorn.trio import serve

from voltaro.api.routes import ApiContext, create_app

log = logging.getLogger(__name__)


class ApiServer:
    def __init__(self, context: ApiContext) -> None:
        self._context = context
        self.app = create_app(context)

    async def run(
        self, *, task_status: trio.TaskStatus[tuple[str, int]] = trio.TASK_STATUS_IGNORED
    ) -> None:
        settings = self._context.settings
        config = Config()
        config.bind = [f"{settings.http_host}:{settings.http_port}"]
        config.accesslog = None
        config.errorlog = logging.getLogger("hypercorn.error")
        config.graceful_timeout = settings.shutdown_grace
        if not settings.api_tokens:
            log.warning(
                "HTTP API: no api_tokens configured; every request is refused "
                "with 401 until tokens are set"
            )

        async def started(*, task_status: trio.TaskStatus[list[str]]) -> None:
            await serve(self.app, config, task_status=task_status)  # type: ignore[arg-type]

        async with trio.open_nursery() as nursery:
            binds: list[str] = await nursery.start(started)
            url = urlsplit(binds[0])
            address = (url.hostname or settings.http_host, url.port or settings.http_port)
            log.info("HTTP API on http://%s:%d (OpenAPI at /openapi.json)", *address)
            task_status.started(address)
