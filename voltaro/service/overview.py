"""The server's health and counts, as both operator interfaces report them."""

from __future__ import annotations

from typing import Any

from voltaro import __version__
from voltaro.net.registry import Registry
from voltaro.store import chargers
from voltaro.store.db import Database


async def server_status(db: Database, registry: Registry, *, uptime_s: float) -> dict[str, Any]:
    database_ok = await db.ping()
    counts = await db.run(chargers.status_counts) if database_ok else {}
    return {
        "version": __version__,
        "uptime_s": round(uptime_s, 1),
        "database": {"ok": database_ok, "backend": db.backend},
        "connected_chargers": len(registry.connected()),
        **counts,
    }
