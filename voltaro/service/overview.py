"""The server's health and counts, as both operator interfaces report them."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from typing import Any

from voltaro import __version__
from voltaro.background import LoopGuard
from voltaro.net.listener import OcppListener
from voltaro.net.registry import Registry
from voltaro.service.cluster_node import ClusterNode
from voltaro.service.frame_log import FrameSink
from voltaro.store import chargers
from voltaro.store.db import Database


async def server_status(
    db: Database, registry: Registry, *, uptime_s: float, cluster: ClusterNode | None = None
) -> dict[str, Any]:
    database_ok = await db.ping()
    counts = await db.run(chargers.status_counts) if database_ok else {}
    status = {
        "version": __version__,
        "uptime_s": round(uptime_s, 1),
        "database": {"ok": database_ok, "backend": db.backend},
        "connected_chargers": len(registry.connected()),
        **counts,
    }
    if cluster is not None:
        # Several nodes (issue 18): this node, every node's lease and chargers owned.
        status["cluster"] = await cluster.snapshot()
    return status


class Protection:
    """The hardening counters of issue 11, for ``status`` and the console (process
    lifetime counts; they reset when the server restarts).

    ``snapshot(live=True)`` leaves out what changes with every frame or connection
    (frames stored, sockets open), so the ``server.health`` event that carries it is
    only published when something was refused, shed or failed.
    """

    def __init__(
        self,
        listener: OcppListener,
        frame_sink: FrameSink,
        guards: Iterable[LoopGuard] = (),
    ) -> None:
        self._listener = listener
        self._frame_sink = frame_sink
        self._guards = list(guards)
        self.http_accept_errors: Callable[[], int] = lambda: 0
        # Several nodes (issue 18): events this node could not hand to the others.
        self.cluster_events: Callable[[], dict[str, int]] | None = None

    def snapshot(self, *, live: bool = False) -> dict[str, Any]:
        out = self._listener.counters()
        out["connections"]["http_accept_errors"] = self.http_accept_errors()
        frame_log = dataclasses.asdict(self._frame_sink.stats)
        failures: dict[str, int] = dict(out.pop("background_failures"))
        for guard in self._guards:
            failures[guard.name] = failures.get(guard.name, 0) + guard.failures
        failures["frame log"] = failures.get("frame log", 0) + frame_log["errors"]
        out["frame_log"] = frame_log
        out["background_failures"] = failures
        if self.cluster_events is not None:
            out["cluster_events"] = self.cluster_events()
        if live:
            del frame_log["stored"]
            out["connections"] = {
                k: v for k, v in out["connections"].items() if k not in ("open", "max_connections")
            }
        return out
