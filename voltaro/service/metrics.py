"""Prometheus metrics of one server (issue 19), served at ``/metrics`` by the HTTP API.

Nothing here counts on the hot path. The server already counts what it does, in plain
attributes updated on the trio thread: the listener (refusals, crashes, abuse cut-offs),
the registry, the password checker (KDF runs), the event hub (drops), the frame sink,
the database health (unit latency, errors, retries), the protocol layer's ``Traffic``
(frames by action, answer latency) and the command service (outcomes). A custom
collector reads them when Prometheus scrapes, so a message costs a dict increment, not a
``prometheus_client`` call with its lock and label lookup (the hot path of issue 14).

One ``CollectorRegistry`` per server, never the library's global one: tests run
several servers in one process. Label values are bounded sets (OCPP actions, spec error
codes, refusal kinds, event names); no label ever carries a charger id.

docs/metrics.md describes every series; docs/grafana-dashboard.json uses them.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterator
from typing import Any

import trio
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from voltaro import __version__
from voltaro.control.wire import Event
from voltaro.instruments import Histogram
from voltaro.net.listener import OcppListener
from voltaro.net.registry import Registry
from voltaro.net.security_events import KINDS as SECURITY_KINDS
from voltaro.protocol.callerrors import CallErrorLog
from voltaro.protocol.traffic import MESSAGE_TYPES, Traffic
from voltaro.service.cluster_events import ClusterEvents
from voltaro.service.commands import CommandService
from voltaro.service.frame_log import FrameSink
from voltaro.service.hub import EventHub
from voltaro.service.overview import Protection
from voltaro.store import transactions
from voltaro.store.db import Database
from voltaro.store.errors import StorageError

log = logging.getLogger(__name__)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# Handshake refusals by kind (voltaro.net.listener.Refusal.kind): exported at 0 from the
# start so that rate() and alerts work before the first one. A kind not listed here is
# exported once it happens.
REFUSAL_KINDS = (
    "abuse_backoff",
    "auth_failed",
    "auth_locked_out",
    "bad_identity",
    "certificate_cn_mismatch",
    "client_certificate_missing",
    "connection_cap",
    "database_unavailable",
    "downgrade",
    "handshake_timeout",
    "shutting_down",
    "subprotocol",
    "unknown_charger",
)
_EVENTS = frozenset(e.value for e in Event)
# How long a scrape waits for the active-transactions count before leaving it out.
QUERY_BUDGET = 2.0


class EventTally:
    """Every event the hub is given (subscribers or not), and the energy of the
    transactions that ended with their StopTransaction. Installed as ``EventHub.tap``."""

    __slots__ = ("counts", "energy_wh")

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self.energy_wh = 0.0

    def __call__(self, name: str, data: dict[str, Any]) -> None:
        if name not in _EVENTS:
            name = "other"
        self.counts[name] = self.counts.get(name, 0) + 1
        if name == Event.TRANSACTION_STOPPED:
            # Published once per transaction: only the StopTransaction that completes it
            # (a duplicate or conflicting stop is not "stopped"). Interrupted sessions
            # count when their stop arrives; one never stopped by its charger does not.
            energy = data.get("energy_wh")
            if isinstance(energy, int | float) and not isinstance(energy, bool) and energy > 0:
                self.energy_wh += energy


@dataclasses.dataclass
class MetricSources:
    """What the collector reads (all built by the composition root)."""

    listener: OcppListener
    registry: Registry
    database: Database
    hub: EventHub
    commands: CommandService
    frame_sink: FrameSink
    traffic: Traffic
    call_errors: CallErrorLog
    protection: Protection
    events: EventTally
    cluster_events: ClusterEvents | None = None  # several nodes (issue 18)


class ServerMetrics(Collector):
    def __init__(self, sources: MetricSources) -> None:
        self._s = sources
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self)
        # CPU, memory, open descriptors of this process (read from /proc at scrape).
        ProcessCollector(registry=self.registry)
        self._active_transactions: int | None = None

    async def refresh(self) -> None:
        """Read what only the database knows (before a scrape). A database that does
        not answer within QUERY_BUDGET leaves the figure out of this scrape."""
        self._active_transactions = None
        with trio.move_on_after(QUERY_BUDGET):
            try:
                self._active_transactions = await self._s.database.run(
                    transactions.count_transactions, active=True
                )
            except StorageError as exc:
                log.debug("metrics: active transactions not counted: %s", exc)

    async def exposition(self) -> bytes:
        await self.refresh()
        return generate_latest(self.registry)

    def collect(self) -> Iterator[Metric]:
        yield from self._server()
        yield from self._connections()
        yield from self._messages()
        yield from self._database()
        yield from self._queues()
        yield from self._business()

    # --- families ----------------------------------------------------------------------

    def _cluster_events(self) -> Iterator[Metric]:
        """The event outbox of a cluster node (voltaro/service/cluster_events.py)."""
        if self._s.cluster_events is None:
            return
        stats = self._s.cluster_events.statistics()
        outcomes = CounterMetricFamily(
            "voltaro_cluster_events_total",
            "Events through the cluster outbox: written (this node's, for the others), "
            "coalesced (meter values superseded within a second), dropped (buffer full "
            "while the database was away: the others' consoles resync), imported (the "
            "others', given to this node's consoles)",
            labels=["outcome"],
        )
        for outcome in ("written", "coalesced", "dropped", "imported"):
            outcomes.add_metric([outcome], stats[outcome])
        yield outcomes
        yield GaugeMetricFamily(
            "voltaro_cluster_events_queued",
            "This node's events waiting to be written to the outbox",
            value=stats["queued"],
        )
        yield CounterMetricFamily(
            "voltaro_cluster_events_resyncs_total",
            "Times this node's consoles were told to resync because another node's events "
            "were lost on the way",
            value=stats["resyncs"],
        )

    def _server(self) -> Iterator[Metric]:
        info = GaugeMetricFamily("voltaro_info", "Voltaro's version (value 1)", labels=["version"])
        info.add_metric([__version__], 1)
        yield info
        failures = CounterMetricFamily(
            "voltaro_background_failures_total",
            "Unexpected failures of background loops (each logged with a traceback)",
            labels=["task"],
        )
        for task, count in sorted(self._s.protection.snapshot()["background_failures"].items()):
            failures.add_metric([task], count)
        yield failures

    def _connections(self) -> Iterator[Metric]:
        listener, states = self._s.listener, self._s.listener.connection_states()
        gauge = GaugeMetricFamily(
            "voltaro_connections",
            "Charger sockets by state: connected (a session) or handshake (HTTP request "
            "read, not yet upgraded)",
            labels=["state"],
        )
        for state in ("connected", "handshake"):
            gauge.add_metric([state], states[state])
        yield gauge
        yield GaugeMetricFamily(
            "voltaro_connections_limit",
            "max_connections as applied (lowered to fit the open-file limit)",
            value=states["limit"],
        )
        yield GaugeMetricFamily(
            "voltaro_sockets_pending",
            "Accepted charger sockets not yet upgraded (the per-address and global caps "
            "count these)",
            value=states["pending"],
        )
        registry = self._s.registry.statistics()
        yield CounterMetricFamily(
            "voltaro_sessions_total",
            "Charger sessions started (every reconnect counts)",
            value=registry.sessions,
        )
        yield CounterMetricFamily(
            "voltaro_session_takeovers_total",
            "Sessions that replaced a live session of the same charger id",
            value=registry.takeovers,
        )
        counters = listener.counters()
        refused = CounterMetricFamily(
            "voltaro_handshakes_refused_total",
            "WebSocket handshakes refused, by reason",
            labels=["reason"],
        )
        by_kind = dict.fromkeys(REFUSAL_KINDS, 0) | counters["handshakes_refused"]
        for kind, count in sorted(by_kind.items()):
            refused.add_metric([kind], count)
        yield refused
        sockets = counters["connections"]
        tcp = CounterMetricFamily(
            "voltaro_sockets_refused_total",
            "Charger sockets closed before any HTTP, by reason",
            labels=["reason"],
        )
        tcp.add_metric(["per_address_cap"], sockets["refused_per_ip"])
        tcp.add_metric(["global_cap"], sockets["refused_global"])
        tcp.add_metric(["no_descriptor"], sockets["refused_no_descriptor"])
        yield tcp
        accept = CounterMetricFamily(
            "voltaro_accept_errors_total",
            "accept() failures for lack of descriptors or memory, by listener",
            labels=["listener"],
        )
        accept.add_metric(["ocpp"], sockets["accept_errors"])
        accept.add_metric(["http"], self._s.protection.http_accept_errors())
        yield accept
        yield CounterMetricFamily(
            "voltaro_sessions_cut_off_total",
            "Sessions closed with 1008 for too many protocol errors",
            value=counters["abuse_cut_off"],
        )
        yield CounterMetricFamily(
            "voltaro_sessions_crashed_total",
            "Connections that failed on a server bug (closed with 1011, logged)",
            value=counters["connections_crashed"],
        )
        passwords = listener.passwords
        yield CounterMetricFamily(
            "voltaro_auth_kdf_runs_total",
            "Password hashes computed for charger logins (scrypt)",
            value=passwords.kdf_runs,
        )
        yield CounterMetricFamily(
            "voltaro_auth_failures_total", "Failed charger logins", value=passwords.failed
        )
        yield CounterMetricFamily(
            "voltaro_auth_throttled_total",
            "Charger logins refused without a KDF run (too many failures)",
            value=passwords.throttled,
        )
        security = CounterMetricFamily(
            "voltaro_security_events_total", "Security events, by type", labels=["type"]
        )
        counts = dict.fromkeys(SECURITY_KINDS, 0) | dict(listener.security.counts)
        for kind, count in sorted(counts.items()):
            security.add_metric([kind], count)
        yield security

    def _messages(self) -> Iterator[Metric]:
        traffic = self._s.traffic
        messages = CounterMetricFamily(
            "voltaro_messages_total",
            "OCPP-J frames by direction (in: from chargers), type (call, result, error, "
            "invalid) and action",
            labels=["direction", "type", "action"],
        )
        for (direction, kind, action), count in sorted(
            traffic.frames.items(), key=lambda item: (item[0][0], str(item[0][1]), item[0][2])
        ):
            messages.add_metric([direction, MESSAGE_TYPES[kind], action], count)
        yield messages
        answers = HistogramMetricFamily(
            "voltaro_answer_duration_seconds",
            "From reading a charger's CALL to sending its answer (queue wait, storage and "
            "commit included), by action",
            labels=["action"],
        )
        for action, histogram in sorted(traffic.answers.items()):
            _add_histogram(answers, [action], histogram)
        yield answers
        errors = CounterMetricFamily(
            "voltaro_callerrors_sent_total", "CALLERRORs sent to chargers, by code", labels=["code"]
        )
        for code, count in sorted(self._s.call_errors.by_code.items()):
            errors.add_metric([code], count)
        yield errors

    def _database(self) -> Iterator[Metric]:
        db = self._s.database
        health = db.health
        yield GaugeMetricFamily(
            "voltaro_db_up",
            "1 when the database takes work, 0 during an outage",
            value=1 if health.available else 0,
        )
        units = HistogramMetricFamily(
            "voltaro_db_unit_duration_seconds",
            "Units of work as their caller waited for them (worker wait, group-commit "
            "window and commit included), failed ones too",
        )
        _add_histogram(units, [], health.unit_seconds)
        yield units
        errors = CounterMetricFamily(
            "voltaro_db_errors_total",
            "Units of work that failed: transient (may succeed later) or permanent",
            labels=["kind"],
        )
        for kind, count in sorted(health.errors.items()):
            errors.add_metric([kind], count)
        yield errors
        yield CounterMetricFamily(
            "voltaro_db_retries_total",
            "Charger-message writes tried again after a transient error",
            value=health.retries,
        )
        yield CounterMetricFamily(
            "voltaro_db_given_up_total",
            "Charger messages not stored within db_retry_seconds (answered with a "
            "CALLERROR; the charger retries)",
            value=health.given_up,
        )
        group = db.group_commit
        yield CounterMetricFamily(
            "voltaro_db_batches_total", "Group-commit transactions", value=group.batches
        )
        yield CounterMetricFamily(
            "voltaro_db_batched_units_total",
            "Units of work committed in group-commit transactions",
            value=group.units,
        )
        yield CounterMetricFamily(
            "voltaro_db_batch_fallbacks_total",
            "Group-commit batches run again one unit at a time after a failure",
            value=group.fallbacks,
        )

    def _queues(self) -> Iterator[Metric]:
        db, health = self._s.database, self._s.database.health
        workers = GaugeMetricFamily(
            "voltaro_threads",
            "Worker threads by pool (database: sized to the connection pool; default: "
            "trio's, for other blocking work) and state (busy, limit)",
            labels=["pool", "state"],
        )
        workers.add_metric(["database", "busy"], db.limiter.borrowed_tokens)
        workers.add_metric(["database", "limit"], db.limiter.total_tokens)
        try:
            default = trio.to_thread.current_default_thread_limiter()
            workers.add_metric(["default", "busy"], default.borrowed_tokens)
            workers.add_metric(["default", "limit"], default.total_tokens)
        except RuntimeError:  # collected outside trio (a test): no default pool to read
            pass
        yield workers
        waiting = GaugeMetricFamily(
            "voltaro_queue_length",
            "Work waiting now, by queue: database (units waiting for a worker thread), "
            "group_commit (units waiting for a batch), frame_log (frames not yet written), "
            "messages (charger messages waiting to be stored)",
            labels=["queue"],
        )
        waiting.add_metric(["database"], db.limiter.statistics().tasks_waiting)
        waiting.add_metric(["group_commit"], db.group_commit.queued)
        waiting.add_metric(["frame_log"], self._s.frame_sink.queued)
        waiting.add_metric(["messages"], health.messages_waiting)
        yield waiting
        hub = self._s.hub.statistics()
        yield GaugeMetricFamily(
            "voltaro_event_subscribers",
            "Consoles and event streams subscribed",
            value=hub.subscribers,
        )
        yield CounterMetricFamily(
            "voltaro_events_published_total",
            "Events given to at least one subscriber (console, event stream) that takes them",
            value=hub.published,
        )
        yield CounterMetricFamily(
            "voltaro_events_dropped_total",
            "Events a slow subscriber did not get (it resyncs); never a charger's message",
            value=hub.dropped,
        )
        yield from self._cluster_events()
        frames = CounterMetricFamily(
            "voltaro_frame_log_frames_total",
            "Raw frames for the frame log, by outcome (stored, or not stored as received)",
            labels=["outcome"],
        )
        stats = dataclasses.asdict(self._s.frame_sink.stats)
        for outcome in (
            "stored",
            "dropped_rate",
            "truncated",
            "shed_buffer",
            "rows_escaped",
            "rows_skipped",
        ):
            frames.add_metric([outcome], stats[outcome])
        yield frames
        yield CounterMetricFamily(
            "voltaro_frame_log_evicted_rows_total",
            "Oldest frame-log rows removed by frame_log_max_rows",
            value=stats["evicted"],
        )

    def _business(self) -> Iterator[Metric]:
        commands = CounterMetricFamily(
            "voltaro_commands_total",
            "Commands to chargers by action and outcome (the charger's answer status, or "
            "why there was none: timeout, offline, call_error, ...)",
            labels=["action", "outcome"],
        )
        for (action, outcome), count in sorted(self._s.commands.outcomes.items()):
            commands.add_metric([action, outcome], count)
        yield commands
        if self._active_transactions is not None:
            yield GaugeMetricFamily(
                "voltaro_transactions_active",
                "Transactions in progress (from the database at scrape time)",
                value=self._active_transactions,
            )
        tally = self._s.events
        yield CounterMetricFamily(
            "voltaro_energy_delivered_wh_total",
            "Energy of the transactions completed by their StopTransaction (Wh)",
            value=tally.energy_wh,
        )
        events = CounterMetricFamily(
            "voltaro_events_total",
            "Server events by name (transaction.started, connector.status, ...), "
            "whether or not anyone is subscribed",
            labels=["event"],
        )
        for name, count in sorted(tally.counts.items()):
            events.add_metric([name], count)
        yield events


def _add_histogram(family: HistogramMetricFamily, labels: list[str], h: Histogram) -> None:
    family.add_metric(labels, buckets=h.cumulative(), sum_value=h.sum)
