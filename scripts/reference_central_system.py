#!/usr/bin/env python3
"""The `ocpp` library's documented asyncio central system (examples/v16/central_system.py
shape): websockets, the same Core handlers as a minimal CSMS, no database. The benchmark
runs it beside Voltaro as the reference.

    python scripts/reference_central_system.py --port 9100
"""

from __future__ import annotations

import argparse
import asyncio
import logging
from datetime import UTC, datetime
from typing import Any

import websockets
from ocpp.routing import on
from ocpp.v16 import ChargePoint, call_result
from ocpp.v16.enums import Action, RegistrationStatus


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


_next_transaction = 0


class CentralSystemChargePoint(ChargePoint):  # type: ignore[misc]
    @on(Action.boot_notification)
    def on_boot_notification(self, **_: Any) -> Any:
        return call_result.BootNotification(
            current_time=now(), interval=300, status=RegistrationStatus.accepted
        )

    @on(Action.heartbeat)
    def on_heartbeat(self, **_: Any) -> Any:
        return call_result.Heartbeat(current_time=now())

    @on(Action.meter_values)
    def on_meter_values(self, **_: Any) -> Any:
        return call_result.MeterValues()

    @on(Action.start_transaction)
    def on_start_transaction(self, **_: Any) -> Any:
        # The benchmark's chargers start one session each; no database, ids from memory.
        global _next_transaction
        _next_transaction += 1
        return call_result.StartTransaction(
            transaction_id=_next_transaction, id_tag_info={"status": "Accepted"}
        )

    @on(Action.status_notification)
    def on_status_notification(self, **_: Any) -> Any:
        return call_result.StatusNotification()


async def on_connect(websocket: Any) -> None:
    charge_point_id = websocket.request.path.strip("/").rsplit("/", 1)[-1]
    cp = CentralSystemChargePoint(charge_point_id, websocket)
    try:
        await cp.start()
    except websockets.ConnectionClosed:
        return


async def main(port: int) -> None:
    async with websockets.serve(
        on_connect,
        "127.0.0.1",
        port,
        subprotocols=["ocpp1.6"],  # type: ignore[list-item]
        compression=None,
    ):
        print(f"reference central system on ws://127.0.0.1:{port}", flush=True)
        await asyncio.Future()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=9100)
    logging.basicConfig(level=logging.WARNING)
    asyncio.run(main(parser.parse_args().port))
