"""The HTTP API server: Hypercorn's trio worker in the server's own nursery."""

from __future__ import annotations

import logging
import time
from urllib.parse import urlsplit

import trio
from hypercorn.config import Config
from hypercorn.trio import serve

from voltaro.api.routes import ApiContext, create_app

log = logging.getLogger(__name__)

# Hypercorn accepts through trio.serve_listeners, which logs a traceback every 100 ms
# while the process is out of descriptors (issue 11.8): one line per 10 s instead.
TRIO_ACCEPT_LOGGER = "trio.serve_listeners"
REPORT_EVERY = 10.0


class AcceptErrorReport(logging.Filter):
    """Counts trio's "accept returned EMFILE" records; lets one through per 10 s,
    without the traceback and with the count."""

    def __init__(self) -> None:
        super().__init__()
        self.errors = 0
        self._unreported = 0
        self._last = -1e9

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.getMessage().startswith("accept returned"):
            return True
        self.errors += 1
        self._unreported += 1
        now = time.monotonic()
        if now - self._last < REPORT_EVERY:
            return False
        record.msg = (
            "HTTP API: accept failed: %s (%d times since the last report); retrying every "
            "0.1 s. Raise the open-file limit or lower max_connections"
        )
        record.args = (record.args[0] if isinstance(record.args, tuple) else "?", self._unreported)
        record.exc_info = None
        record.exc_text = None
        self._unreported, self._last = 0, now
        return True


class ApiServer:
    def __init__(self, context: ApiContext) -> None:
        self._context = context
        self.app = create_app(context)
        self.accept_errors = AcceptErrorReport()

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

        trio_accept = logging.getLogger(TRIO_ACCEPT_LOGGER)
        trio_accept.addFilter(self.accept_errors)
        try:
            async with trio.open_nursery() as nursery:
                binds: list[str] = await nursery.start(started)
                url = urlsplit(binds[0])
                address = (url.hostname or settings.http_host, url.port or settings.http_port)
                log.info("HTTP API on http://%s:%d (OpenAPI at /openapi.json)", *address)
                task_status.started(address)
        finally:
            trio_accept.removeFilter(self.accept_errors)
