"""The OCPP-J RPC layer of one connection: the `ocpp` library's ChargePoint on trio.

`TrioChargePoint` subclasses `ocpp.v16.ChargePoint` and keeps its `@on`/`@after`
routing (the route map), payload dataclasses and schemas; it replaces only what the
library binds to asyncio (reference "trio and the ocpp library" §3-§5): the receive
loop, `call()` with its lock, queue and timeout, `@after` scheduling and validation.

Theory of operation, per connection (one nursery):
- the reader task only reads: CALLs go to a bounded queue, CALLRESULT/CALLERROR go
  straight to the waiting `call()`; it never waits on a handler, so a handler may await
  a CALL to the charger and crossing CALLs work (OCPP-J §4.1.1 NOTE);
- one worker answers the charger's CALLs strictly in arrival order (R24), exactly one
  answer each (R26). It runs only while there is a CALL to answer: an idle connection
  holds no worker task and no channel (issue 14 step 5: each trio task with its cancel
  status and coroutine frames costs about 2-3 KiB per connection). A charger sends one
  CALL at a time (OCPP-J §4.1.1), so the worker usually lives for one answer;
- `@after` hooks run as their own tasks and never delay the answer;
- our own CALLs: one outstanding at a time (trio.Lock is FIFO-fair; OCPP-J §4.1.1),
  the response timeout is a cancel scope around the wait only.
"""

from __future__ import annotations

import inspect
import json
import logging
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from time import perf_counter
from typing import Any

import trio
from ocpp.charge_point import (
    camel_to_snake_case,
    remove_nones,
    serialize_as_dict,
    snake_to_camel_case,
)
from ocpp.routing import create_route_map
from ocpp.v16 import ChargePoint as LibraryChargePoint
from ocpp.v16 import call_result
from ocpp.v16.enums import Action
from trio_websocket import ConnectionClosed, WebSocketConnection

from voltaro.domain.model import FrameRecord
from voltaro.domain.ports import CURRENT_CALL, IncomingCall
from voltaro.domain.timestamps import utc_now
from voltaro.logs import ACTION, CHARGER_ID, MESSAGE_ID
from voltaro.protocol.callerrors import CallErrorLog
from voltaro.protocol.edge import checked_payload, repair_text
from voltaro.protocol.errors import (
    CallErrorReceived,
    CallQueueTimeout,
    CallTimeoutError,
    ConnectionLostError,
    InvalidRequestError,
    OcppError,
    spec_code,
)
from voltaro.protocol.traffic import Traffic
from voltaro.protocol.validation import (
    empty_result_allowed,
    validate_incoming_call,
    validate_incoming_result,
    validate_outgoing_call,
    validate_outgoing_result,
)

log = logging.getLogger("voltaro.protocol")

MAX_UNIQUE_ID = 36  # OCPP-J §4.1.4 Table 3
_KNOWN_ACTIONS = frozenset(a.value for a in Action)


# Keys seen so far, camelCase -> snake_case. Bounded (keys come from chargers): cleared
# when full, which only costs the next conversions.
_SNAKE_KEYS: dict[str, str] = {}
_SNAKE_KEYS_MAX = 4096
# Leaves of a parsed JSON payload: nothing to convert below them.
_LEAVES = frozenset({str, int, float, bool, type(None)})


def _snake_key(key: str) -> str:
    # The library's own conversion, once per distinct key (a regex pair per key per
    # message cost ~150 us per MeterValues; reference §9.6).
    converted = _SNAKE_KEYS.get(key)
    if converted is None:
        converted = next(iter(camel_to_snake_case({key: None})))
        if len(_SNAKE_KEYS) >= _SNAKE_KEYS_MAX:
            _SNAKE_KEYS.clear()
        _SNAKE_KEYS[key] = converted
    return converted


def to_snake_case(data: Any) -> Any:
    """``ocpp.charge_point.camel_to_snake_case`` with the key conversion cached.

    Leaves are not recursed into (issue 14: a MeterValues has a few dozen of them)."""
    if isinstance(data, dict):
        out = {}
        for k, v in data.items():
            if isinstance(k, str):
                k = _snake_key(k)
            out[k] = v if type(v) in _LEAVES else to_snake_case(v)
        return out
    if isinstance(data, list):
        return [v if type(v) in _LEAVES else to_snake_case(v) for v in data]
    return data


# json.dumps with any non-default argument builds a JSONEncoder per call: built once
# (same output: compact separators, ASCII, NaN allowed as json.dumps does).
_encode = json.JSONEncoder(separators=(",", ":")).encode
_encode_lenient = json.JSONEncoder(separators=(",", ":"), default=str).encode
# The name trio would compute for every worker it starts (issue 14: once, not per CALL).
_WORKER_NAME = "voltaro.protocol.rpc.TrioChargePoint._worker"


def _has_no_fields(result_type: type) -> bool:
    """An answer dataclass without fields (MeterValues, Heartbeat has one...): its JSON
    is ``{}`` whatever the instance, so it is not serialised per message."""
    empty = _EMPTY_RESULT.get(result_type)
    if empty is None:
        fields = getattr(result_type, "__dataclass_fields__", None)
        empty = _EMPTY_RESULT[result_type] = fields is not None and not fields
    return empty


_EMPTY_RESULT: dict[type, bool] = {}


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not valid JSON")


# json.loads with parse_constant builds a JSONDecoder per call: built once (issue 14).
_decode = json.JSONDecoder(parse_constant=_reject_constant).decode


def parse_frame(text: str) -> Any:
    """json.loads that fails cleanly on NaN/Infinity and on absurd nesting."""
    return _decode(text)


class _IncomingCall:
    __slots__ = ("action", "payload", "received", "repaired", "text", "unique_id")

    def __init__(
        self,
        unique_id: str,
        action: str,
        payload: dict[str, Any],
        text: str,
        repaired: tuple[str, ...] = (),
    ) -> None:
        self.unique_id = unique_id
        self.action = action
        self.payload = payload
        self.text = text
        self.repaired = repaired
        self.received = perf_counter()  # answer latency counts the wait in the queue


FrameRecorder = Callable[[FrameRecord], None]


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    """What one charger may cost us (issue 11 items 6 and 10).

    ``send_timeout``: a send that blocks longer means the charger stopped reading; the
    connection is closed and a command waiting on it fails at once instead of holding
    the socket for minutes. ``protocol_error_limit`` within ``protocol_error_window``
    seconds: beyond it the charger is cut off with 1008 (policy violation, RFC 6455
    §7.4.1). A protocol error is any CALLERROR we send that is not our own fault
    (InternalError), an answer to no CALL of ours, or a frame of unknown type.
    """

    send_timeout: float = 10.0
    # How long a command may wait for the charger's earlier commands (one outstanding
    # CALL at a time, OCPP-J §4.1.1) before it is given up unsent (issue 10 §2.10).
    queue_timeout: float = 30.0
    protocol_error_limit: int = 100
    protocol_error_window: float = 60.0
    # Several nodes (issue 18): True while this node's lease is not known valid. A fenced
    # node sends no CALL at all: another node may own the charger by now (A2 §4).
    fenced: Callable[[], bool] | None = None


class TrioChargePoint(LibraryChargePoint):  # type: ignore[misc]
    """One charger connection speaking OCPP-J 1.6 over a trio-websocket connection."""

    def __init__(
        self,
        charger_id: str,
        websocket: WebSocketConnection,
        *,
        call_timeout: float = 30.0,
        record_frame: FrameRecorder | None = None,
        incoming_queue: int = 16,
        call_errors: CallErrorLog | None = None,
        limits: ConnectionLimits | None = None,
        traffic: Traffic | None = None,
    ) -> None:
        # The library's __init__ is not called: it builds a route map of bound methods, an
        # asyncio.Lock and an asyncio.Queue per connection, none of which is used here
        # (issue 14 step 5: memory per idle connection). What it sets is set here; the
        # route map is built once per class (``_routes``).
        self.id = charger_id
        self._connection = websocket
        self._response_timeout = call_timeout
        self._unique_id_generator = uuid.uuid4
        self.logger = log
        self._limits = limits or ConnectionLimits()
        # Lists, not deques: an empty deque is 760 bytes, and every connection has these
        # (issue 14 step 5); both stay short (the queue and error limits).
        self._protocol_errors: list[float] = []
        # Set when this charger was cut off for abuse: the listener applies a back-off.
        self.policy_violation = False
        self.charger_id = charger_id
        self._ws = websocket
        self._call_lock = trio.Lock()  # replaces the library's asyncio.Lock
        self._response_queue = None  # the library's asyncio.Queue is never used here
        self._pending: dict[str, tuple[str, trio.MemorySendChannel[Any]]] = {}
        # CALLs read and not yet answered, oldest first; the worker runs while it is not
        # empty. ``_queue_limit``: the reader waits (never drops) while it is full.
        self._incoming: list[_IncomingCall] = []
        self._queue_limit = max(1, incoming_queue)
        self._worker_running = False
        # Set by the worker when it made room in a full queue, or finished (drain):
        # made only while someone waits for it.
        self._worker_progress: trio.Event | None = None
        self._record = record_frame or (lambda frame: None)
        self._closed = False  # nothing waits for it: a flag, not a trio.Event
        self._nursery: trio.Nursery | None = None
        self._call_errors = call_errors or CallErrorLog()
        self._traffic = traffic or Traffic()
        self._reading = trio.CancelScope()
        self._draining = False

    # --- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        """Serve the connection until the socket closes (never raises on a close)."""
        # The reader runs in this task and names each frame it reads in the log context;
        # what the caller logs after the connection ends concerns no message.
        reading = MESSAGE_ID.set(None)
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                try:
                    with self._reading:
                        await self._reader()
                    if self._draining:
                        # Graceful shutdown: what was read is answered, then we end.
                        while self._worker_running:
                            await self._wait_for_worker()
                finally:
                    self._mark_closed()
                    nursery.cancel_scope.cancel()
        finally:
            self._mark_closed()
            MESSAGE_ID.reset(reading)

    def drain(self) -> None:
        """Graceful shutdown, as hypercorn does it: read no new frames, answer the CALLs
        already read (their writes commit first, as always), then end ``start``.

        The listener bounds this with shutdown_grace and closes the socket with 1001.
        A frame not read is not lost: the charger sends it again after reconnecting.
        """
        self._draining = True
        self._reading.cancel()

    async def close(self, code: int = 1000, reason: str = "") -> None:
        self._mark_closed()
        with trio.move_on_after(2):
            await self._ws.aclose(code, reason)

    @property
    def closed(self) -> bool:
        return self._closed

    def _hang_up(self) -> None:
        """The peer is gone: stop reading and answering (the reader may be parked on a
        full queue and would not notice by itself)."""
        self._mark_closed()
        if self._nursery is not None:
            self._nursery.cancel_scope.cancel()

    def _mark_closed(self) -> None:
        if self._closed:
            return
        self._closed = True
        # A caller waiting for an answer fails at once instead of waiting out its
        # timeout (the channel close wakes it with EndOfChannel).
        for _action, channel in list(self._pending.values()):
            channel.close()
        self._pending.clear()

    # --- reading -----------------------------------------------------------------

    async def _reader(self) -> None:
        while True:
            try:
                text = await self._ws.get_message()
            except ConnectionClosed:
                return
            # The liveness stamp (net.liveness.TrackedWebSocket): when the message arrived,
            # not when we are done with it (backpressure can hold the reader a while).
            received = getattr(self._ws, "message_received", None)
            if received is not None:
                received()
            if isinstance(text, bytes):
                # OCPP-J §4.1.2: text frames only. Be forgiving if it is UTF-8.
                try:
                    text = text.decode()
                except UnicodeDecodeError:
                    MESSAGE_ID.set(None)  # no id could be read (nor for the two below)
                    await self._send_error("-1", "FormationViolation", "binary frame")
                    continue
            await self._dispatch(text)

    async def _dispatch(self, text: str) -> None:
        try:
            frame = parse_frame(text)
        except (ValueError, RecursionError):
            MESSAGE_ID.set(None)
            self._record_in(text, None, None, None)
            # No unique id can be read; OCPP 2.0.1 Part 4 §4.2.3 uses "-1".
            await self._send_error("-1", "FormationViolation", "frame is not valid JSON")
            return
        if not isinstance(frame, list) or not frame:
            MESSAGE_ID.set(None)
            self._record_in(text, None, None, None)
            await self._send_error("-1", "ProtocolError", "a frame must be a JSON array")
            return
        kind = frame[0]
        unique_id = frame[1] if len(frame) > 1 else None
        # Log lines about this frame carry its id (voltaro/logs.py); the reader task's
        # lines are about the frame it last read.
        MESSAGE_ID.set(unique_id if isinstance(unique_id, str) else None)
        if kind == 2:
            action = frame[2] if len(frame) > 2 and isinstance(frame[2], str) else None
            self._record_in(text, 2, unique_id if isinstance(unique_id, str) else None, action)
            await self._accept_call(frame, text)
        elif kind in (3, 4):
            # Issue 21.4: an answer's row carries the action of the CALL it answers.
            pending = self._pending.get(unique_id) if isinstance(unique_id, str) else None
            self._record_in(
                text,
                kind,
                unique_id if isinstance(unique_id, str) else None,
                pending[0] if pending is not None else None,
            )
            if not self._deliver(frame):
                await self._protocol_error()
        else:
            # OCPP-J §4.1.3: an unknown MessageTypeId is ignored, no reply (R15).
            self._record_in(text, None, None, None)
            log.info("charger=%s ignored frame with message type %r", self.charger_id, kind)
            await self._protocol_error()

    async def _accept_call(self, frame: list[Any], text: str) -> None:
        unique_id = frame[1] if len(frame) > 1 else None
        if not isinstance(unique_id, str) or not unique_id:
            await self._send_error("-1", "ProtocolError", "CALL without a string unique id")
            return
        if len(unique_id) > MAX_UNIQUE_ID:
            # OCPP-J §4.2.3 allows a CALLERROR for a unique id longer than 36 characters.
            await self._send_error(
                unique_id, "TypeConstraintViolation", "unique id longer than 36 characters"
            )
            return
        if len(frame) != 4:
            await self._send_error(unique_id, "ProtocolError", "a CALL has exactly 4 elements")
            return
        action, payload = frame[2], frame[3]
        if not isinstance(action, str):
            await self._send_error(unique_id, "NotImplemented", "action must be a string")
            return
        if payload is None:
            payload = {}  # R18: tolerate null for an empty payload
        if not isinstance(payload, dict):
            await self._send_error(
                unique_id, "FormationViolation", "payload must be an object", action=action
            )
            return
        repaired: list[str] = []
        try:
            # Issue 11: nothing unencodable or unstorable goes past this point.
            payload = checked_payload(payload, repaired=repaired)
        except OcppError as exc:
            await self._send_error(unique_id, exc.code, exc.description, exc.details, action=action)
            return
        # Backpressure: the queue is bounded and this waits (never drops) while the
        # worker is busy storing earlier messages, so a charger whose messages are not
        # yet stored is not read from; a flooding charger slows down only itself.
        while len(self._incoming) >= self._queue_limit:
            await self._wait_for_worker()
        self._incoming.append(_IncomingCall(unique_id, action, payload, text, tuple(repaired)))
        if not self._worker_running and self._nursery is not None:
            self._worker_running = True
            self._nursery.start_soon(self._worker, name=_WORKER_NAME)

    async def _wait_for_worker(self) -> None:
        """Until the worker took a CALL off the queue or ended."""
        if self._worker_progress is None:
            self._worker_progress = trio.Event()
        await self._worker_progress.wait()

    def _worker_moved(self) -> None:
        progress, self._worker_progress = self._worker_progress, None
        if progress is not None:
            progress.set()

    def _deliver(self, frame: list[Any]) -> bool:
        """Hand an answer to the waiting ``call()``; False for an answer to nothing."""
        unique_id = frame[1] if len(frame) > 1 else None
        entry = self._pending.pop(unique_id, None) if isinstance(unique_id, str) else None
        if entry is None:
            # R25: late or unknown answers are logged and dropped.
            log.info("charger=%s dropped answer with unknown id %r", self.charger_id, unique_id)
            return False
        _action, channel = entry
        try:
            channel.send_nowait(frame)
        except (trio.WouldBlock, trio.ClosedResourceError, trio.BrokenResourceError):
            log.info("charger=%s duplicate answer for %r dropped", self.charger_id, unique_id)
        return True

    # --- answering the charger's CALLs ---------------------------------------------

    async def _worker(self) -> None:
        """Answer the queued CALLs in arrival order; end when the queue is empty (the
        reader starts a new worker for the next CALL)."""
        try:
            while self._incoming:
                incoming = self._incoming.pop(0)
                self._worker_moved()
                await self._answer(incoming)
                # Answered (or the charger hung up first): from reading it to now.
                self._traffic.answered(incoming.action, perf_counter() - incoming.received)
                del incoming  # an idle connection keeps nothing of its last CALL
        finally:
            self._worker_running = False
            self._worker_moved()

    async def _answer(self, incoming: _IncomingCall) -> None:
        action, unique_id = incoming.action, incoming.unique_id
        after: Callable[..., Any] | None = None
        snake: dict[str, Any] = {}
        CURRENT_CALL.set(IncomingCall(unique_id, action, incoming.text, incoming.repaired))
        # Every log line of this answer (and of its @after hook, which inherits this
        # context) names the message (voltaro/logs.py).
        MESSAGE_ID.set(unique_id)
        ACTION.set(action)
        try:
            on_action, after_action = self._handlers_for(action)
            payload = self.normalize_incoming(action, incoming.payload)
            validate_incoming_call(action, payload)
            snake = to_snake_case(payload)
            result = on_action(self, **snake)
            if inspect.isawaitable(result):
                result = await result
            text = self._answer_text(action, unique_id, result)
            after = after_action
        except OcppError as exc:
            await self._send_error(unique_id, exc.code, exc.description, exc.details, action=action)
            return
        except Exception as exc:  # every CALL gets exactly one answer (R26)
            code, description = self.describe_failure(action, exc)
            await self._send_error(unique_id, code, description, action=action)
            return
        try:
            await self._send_text(text, 3, unique_id, action)
        except ConnectionLostError:
            # A charger may hang up at any time; it keeps the unanswered CALL and sends
            # it again after reconnecting (OCPP 1.6 §3.7.1). Normal, not a failure.
            log.info(
                "charger=%s hung up before the answer to %s %s could be sent",
                self.charger_id,
                action,
                unique_id,
            )
            self._hang_up()
            return
        if after is not None and self._nursery is not None:
            self._nursery.start_soon(self._run_after, action, after, snake)

    def _answer_text(self, action: str, unique_id: str, result: Any) -> str:
        """The CALLRESULT frame for a handler's answer dataclass.

        Raises:
            OcppError: InternalError when our own answer fails the schema.
        """
        if _has_no_fields(type(result)):
            # MeterValues, StatusNotification...: ``{}``, known valid for these actions
            # (checked once per action, not per message), the frame built directly.
            response: dict[str, Any] = {}
        else:
            response = snake_to_camel_case(remove_nones(serialize_as_dict(result)))
        try:
            if response or not empty_result_allowed(action):
                validate_outgoing_result(action, response)
        except OcppError as exc:
            # Our own answer is wrong: that is our bug, never the charger's.
            log.error(
                "charger=%s invalid answer to %s: %s", self.charger_id, action, exc.description
            )
            raise OcppError("InternalError", "the Central System built an invalid answer") from None
        if not response:
            return f"[3,{_encode(unique_id)},{{}}]"
        return _encode([3, unique_id, response])

    @classmethod
    def _routes(cls) -> dict[str, dict[str, Any]]:
        """The library's route map of this class (functions, not bound methods), once."""
        routes: dict[str, dict[str, Any]] | None = cls.__dict__.get("_route_cache")
        if routes is None:
            routes = create_route_map(cls)
            cls._route_cache = routes
        return routes

    @property
    def route_map(self) -> dict[str, dict[str, Any]]:
        """The library's ``route_map`` (bound handlers), built on demand."""
        return {action: self._bind(h) for action, h in self._routes().items()}

    def _bind(self, handlers: dict[str, Any]) -> dict[str, Any]:
        return {
            k: v.__get__(self) if k in ("_on_action", "_after_action") else v
            for k, v in handlers.items()
        }

    @classmethod
    def _handlers_for(cls, action: str) -> tuple[Callable[..., Any], Callable[..., Any] | None]:
        """The @on handler and @after hook (functions: pass self) of ``action``, looked up
        once per class and action (issue 14: not a bound route map per CALL)."""
        cache: dict[str, tuple[Callable[..., Any], Callable[..., Any] | None]] | None = (
            cls.__dict__.get("_handler_cache")
        )
        if cache is None:
            cache = {}
            cls._handler_cache = cache
        found = cache.get(action)
        if found is None:
            handlers = cls._routes().get(action) if isinstance(action, str) else None
            if handlers is None or "_on_action" not in handlers:
                # OCPP-J 1.6 Table 7 (the library has these two swapped, R21).
                if action in _KNOWN_ACTIONS:
                    raise OcppError(
                        "NotSupported", f"{action} is not supported by this Central System"
                    )
                raise OcppError("NotImplemented", f"{action} is not a known OCPP 1.6 action")
            # Only routed actions are kept: the cache is bounded by the route map.
            found = cache[action] = (handlers["_on_action"], handlers.get("_after_action"))
        return found

    def normalize_incoming(self, action: str, payload: dict[str, Any]) -> dict[str, Any]:
        """Hook for subclasses: repair known field quirks before validation."""
        return payload

    def describe_failure(self, action: str, exc: Exception) -> tuple[str, str]:
        """Hook for subclasses: the CALLERROR for an exception raised by a handler."""
        log.error("charger=%s handler for %s failed", self.charger_id, action, exc_info=exc)
        return "InternalError", "An internal error occurred while processing the request"

    async def _run_after(
        self, action: str, hook: Callable[..., Any], snake: dict[str, Any]
    ) -> None:
        try:
            result = hook(self, **snake)
            if inspect.isawaitable(result):
                await result
        except Exception:
            log.exception("charger=%s after-hook for %s failed", self.charger_id, action)

    # --- our own CALLs -------------------------------------------------------------

    async def call(
        self,
        payload: Any,
        suppress: bool = False,
        unique_id: str | None = None,
        skip_schema_validation: bool = False,
    ) -> Any:
        """Send a CALL and return the library's call_result dataclass.

        Raises:
            CallTimeoutError: no answer within the response timeout.
            ConnectionLostError: the connection is gone or went away while waiting.
            CallErrorReceived: the charger answered with a CALLERROR (unless suppress).
            InvalidRequestError: our payload failed the schema; nothing was sent.
            OcppError: the charger's answer failed validation.
        """
        action = type(payload).__name__
        body = snake_to_camel_case(remove_nones(serialize_as_dict(payload)))
        if not skip_schema_validation:
            try:
                validate_outgoing_call(action, body)
            except OcppError as exc:
                raise InvalidRequestError(exc.description) from None
        uid = unique_id or str(self._unique_id_generator())
        # Our CALL runs in the caller's task (control socket, API): its log lines name
        # the charger and this message while it lasts.
        tokens = (CHARGER_ID.set(self.charger_id), MESSAGE_ID.set(uid), ACTION.set(action))
        try:
            return await self._call(action, body, uid, suppress, skip_schema_validation)
        finally:
            CHARGER_ID.reset(tokens[0])
            MESSAGE_ID.reset(tokens[1])
            ACTION.reset(tokens[2])

    async def _call(
        self, action: str, body: Any, uid: str, suppress: bool, skip_schema_validation: bool
    ) -> Any:
        async with self._turn(action):
            if self._closed:
                raise ConnectionLostError(f"{self.charger_id} is not connected")
            fenced = self._limits.fenced
            if fenced is not None and fenced():
                # Checked after the wait for our turn: a CALL queued before the lease
                # was lost must not go out after it (scale-and-security A3, SIGSTOP).
                raise ConnectionLostError(
                    f"{self.charger_id}: this node lost its cluster lease; {action} not sent"
                )
            send, receive = trio.open_memory_channel[list[Any]](1)
            self._pending[uid] = (action, send)
            try:
                await self._send_text(_encode([2, uid, action, body]), 2, uid, action)
                with trio.move_on_after(self._response_timeout) as scope:
                    frame = await receive.receive()
                if scope.cancelled_caught:
                    raise CallTimeoutError(
                        f"{self.charger_id} did not answer {action} within "
                        f"{self._response_timeout:g} s"
                    )
            except (trio.EndOfChannel, trio.ClosedResourceError):
                raise ConnectionLostError(
                    f"{self.charger_id} disconnected during {action}"
                ) from None
            finally:
                # A late answer now finds no entry and is dropped as a stray (R25).
                self._pending.pop(uid, None)
        if frame[0] == 4:
            code = frame[2] if len(frame) > 2 else "GenericError"
            description = frame[3] if len(frame) > 3 else ""
            if suppress:
                return None
            try:
                details = checked_payload(frame[4] if len(frame) > 4 else {})
            except OcppError:
                details = {}
            raise CallErrorReceived(
                repair_text(str(code))[:100], repair_text(str(description))[:500], details
            )
        answer = frame[2] if len(frame) > 2 and isinstance(frame[2], dict) else None
        if answer is None:
            raise OcppError("FormationViolation", f"{action} answer is not an object")
        answer = checked_payload(answer, where=f"{action} answer")
        if not skip_schema_validation:
            validate_incoming_result(action, answer)
        cls = getattr(call_result, action)
        fields = getattr(cls, "__dataclass_fields__", {})
        snake = {k: v for k, v in camel_to_snake_case(answer).items() if k in fields}
        return cls(**snake)

    @asynccontextmanager
    async def _turn(self, action: str) -> AsyncIterator[None]:
        """Our turn to have the one outstanding CALL, waiting at most queue_timeout.

        The wait is bounded on its own: the answer timeout starts only once the CALL is
        sent, so a queued command can never "time out" without having been sent.
        """
        with trio.move_on_after(self._limits.queue_timeout) as waiting:
            await self._call_lock.acquire()
        if waiting.cancelled_caught:
            raise CallQueueTimeout(
                f"{self.charger_id} is busy with earlier commands: {action} not sent after "
                f"waiting {self._limits.queue_timeout:g} s"
            )
        try:
            yield
        finally:
            self._call_lock.release()

    # --- sending -------------------------------------------------------------------

    async def _send(self, message: str) -> None:  # library compatibility
        await self._send_text(message, None, None, None)

    async def _send_text(
        self, text: str, kind: int | None, unique_id: str | None, action: str | None
    ) -> None:
        self._note_frame("out", text, kind, unique_id, action)
        try:
            with trio.move_on_after(self._limits.send_timeout) as blocked:
                await self._ws.send_message(text)
        except ConnectionClosed:
            self._mark_closed()
            raise ConnectionLostError(f"{self.charger_id} disconnected") from None
        if blocked.cancelled_caught:
            # Issue 11.10: the charger stopped reading. Half a frame may be on the wire,
            # so the connection cannot be used again: end it.
            log.warning(
                "charger=%s stopped reading (a send blocked for %g s); closing its connection",
                self.charger_id,
                self._limits.send_timeout,
            )
            self._hang_up()
            raise ConnectionLostError(
                f"{self.charger_id} stopped reading (send blocked for "
                f"{self._limits.send_timeout:g} s); connection closed"
            )

    async def _send_error(
        self,
        unique_id: str,
        code: str,
        description: str,
        details: dict[str, Any] | None = None,
        *,
        action: str | None = None,
    ) -> None:
        code = spec_code(code)
        frame = [4, unique_id, code, description, details or {}]
        try:
            text = _encode_lenient(frame)
            await self._send_text(text, 4, unique_id, action)
        except ConnectionLostError:
            self._hang_up()
            return
        self._call_errors.sent(self.charger_id, unique_id, action, code, description)
        if code != "InternalError":
            await self._protocol_error()

    async def _protocol_error(self) -> None:
        """Count one protocol error; past the limit, cut the charger off (issue 11.6)."""
        limit, window = self._limits.protocol_error_limit, self._limits.protocol_error_window
        if limit <= 0 or self.policy_violation:
            return
        now = trio.current_time()
        errors = self._protocol_errors
        errors.append(now)
        stale = 0
        while stale < len(errors) and now - errors[stale] > window:
            stale += 1
        del errors[:stale]
        if len(errors) <= limit:
            return
        self.policy_violation = True
        log.warning(
            "security: charge point %r sent more than %d protocol errors in %g s; "
            "closing its connection (1008)",
            self.charger_id,
            limit,
            window,
        )
        await self.close(1008, "too many protocol errors")
        self._hang_up()

    def _record_in(
        self, text: str, kind: int | None, unique_id: str | None, action: str | None
    ) -> None:
        self._note_frame("in", text, kind, unique_id, action)

    def _note_frame(
        self,
        direction: str,
        text: str,
        kind: int | None,
        unique_id: str | None,
        action: str | None,
    ) -> None:
        self._traffic.frame(direction, kind, action)
        self._record(
            FrameRecord(
                charger_id=self.charger_id,
                direction=direction,
                at=utc_now(),
                payload=text,
                action=action,
                unique_id=unique_id,
                message_type=kind,
            )
        )


__all__ = ["CallErrorReceived", "CallTimeoutError", "ConnectionLostError", "TrioChargePoint"]
