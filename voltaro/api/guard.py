"""The HTTP API's front door, before FastAPI sees a request (issue 11.7).

FastAPI reads and parses a request body before it runs the dependencies that check the
token, so an anonymous client could make the server buffer any amount of data. This
ASGI middleware runs first and, in this order:

1. caps the requests in progress (``MAX_CONCURRENT``; beyond it 503 with Retry-After),
2. authenticates the bearer token from the headers alone (401 without reading a byte
   of the body), except on the public paths (health probes and the API description),
3. refuses a body over ``MAX_BODY_BYTES`` (413): at once from Content-Length, or while
   reading a chunked body; an accepted body is at most that big in memory.

``streamed`` routes (a firmware image sent with ``POST /firmware``) are the exception:
their body is not read here but handed on as it arrives, for the route to stream to
disk under its own limit (given here too, so that a Content-Length over it is refused
at once).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from dataclasses import dataclass
from typing import Any

from voltaro.settings import ApiScope, ApiToken

MAX_BODY_BYTES = 1024 * 1024
MAX_CONCURRENT = 64
# No token: health checkers need no secret, and the API's description is not a secret
# (nor are Swagger UI's own files under /docs/static/).
PUBLIC_PATHS = frozenset(
    {"/health/live", "/health/ready", "/openapi.json", "/docs", "/docs/oauth2-redirect"}
)
PUBLIC_PREFIX = "/docs/static/"
# Prometheus' scrape path: any token may read it; a ``metrics`` token may read nothing else.
METRICS_PATH = "/metrics"

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Caller:
    """Who a request comes from: the token's name (or a fingerprint) and its scope."""

    name: str
    scope: ApiScope


def token_name(token: ApiToken) -> str:
    """The audit name: the configured one, else the scope and a short fingerprint."""
    if token.name:
        return token.name
    fingerprint = hashlib.sha256(token.token.encode()).hexdigest()[:8]
    return f"{token.scope.value}-{fingerprint}"


def authenticate(tokens: Iterable[ApiToken], header: str) -> Caller | None:
    scheme, _, presented = header.partition(" ")
    if scheme.lower() != "bearer" or not presented.strip():
        return None
    match: ApiToken | None = None
    for token in tokens:  # every token compared, in constant time each
        if hmac.compare_digest(token.token.encode(), presented.strip().encode()):
            match = token
    return None if match is None else Caller(token_name(match), match.scope)


async def _refuse(
    send: Send, status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> None:
    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    # The body we did not read stays unread; Hypercorn (h11) closes the connection after
    # this answer rather than read it.
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


class RequestGuard:
    def __init__(
        self,
        app: App,
        tokens: tuple[ApiToken, ...],
        *,
        max_body: int | None = None,
        max_concurrent: int | None = None,
        streamed: dict[tuple[str, str], int] | None = None,
    ) -> None:
        self._app = app
        self._streamed = streamed or {}
        self._tokens = tokens
        self._max_body = MAX_BODY_BYTES if max_body is None else max_body
        self._max_concurrent = MAX_CONCURRENT if max_concurrent is None else max_concurrent
        self.in_flight = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        if self.in_flight >= self._max_concurrent:
            await _refuse(send, 503, "busy", "too many requests in progress", {"Retry-After": "1"})
            return
        self.in_flight += 1
        try:
            await self._guarded(scope, receive, send)
        finally:
            self.in_flight -= 1

    async def _guarded(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        path = scope["path"]
        if path not in PUBLIC_PATHS and not path.startswith(PUBLIC_PREFIX):
            caller = authenticate(self._tokens, headers.get("authorization", ""))
            if caller is None:
                missing = not headers.get("authorization")
                await _refuse(
                    send,
                    401,
                    "unauthorized",
                    "a bearer token is required" if missing else "unknown bearer token",
                    {"WWW-Authenticate": "Bearer"},
                )
                return
            if caller.scope is ApiScope.METRICS and path != METRICS_PATH:
                await _refuse(
                    send, 403, "forbidden", f"a metrics token may only read {METRICS_PATH}"
                )
                return
            scope.setdefault("state", {})["caller"] = caller
        length = headers.get("content-length")
        stream_limit = self._streamed.get((scope["method"], path))
        if stream_limit is not None:
            if length is not None and (not length.isdigit() or int(length) > stream_limit):
                await self._too_large(send, stream_limit)
                return
            await self._app(scope, receive, send)
            return
        if length is not None and (not length.isdigit() or int(length) > self._max_body):
            await self._too_large(send)
            return
        if scope["method"] in ("GET", "HEAD", "DELETE", "OPTIONS"):
            await self._app(scope, receive, send)
            return
        # Read the body here, at most max_body bytes, then hand it on.
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self._max_body:
                await self._too_large(send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self._app(scope, replay, send)

    async def _too_large(self, send: Send, limit: int | None = None) -> None:
        await _refuse(
            send, 413, "too_large", f"request bodies are limited to {limit or self._max_body} bytes"
        )
