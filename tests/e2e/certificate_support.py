"""Helpers of the charger certificate tests: a CertificateCharger kept online over
wss:// while the test drives the server, and SignCertificate sent from its own loop."""

from __future__ import annotations

import asyncio
import functools
import json
import os
import sys
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import trio

from tests.e2e.conftest import TlsServer
from tests.support import ocpp_charger
from tests.support.certificate_charger import CertificateCharger
from tests.support.pki import Issued


@asynccontextmanager
async def online(
    tls: TlsServer, charger_id: str, cert: Issued | None = None
) -> AsyncIterator[CertificateCharger]:
    """The charger connected over wss:// (booted; with ``cert`` as its client
    certificate) until the block ends."""
    ready = trio.Event()
    done = threading.Event()
    holder: list[CertificateCharger] = []

    async def stay(cp: Any, ws: Any) -> dict[str, Any]:
        cp.loop = asyncio.get_running_loop()
        holder.append(cp)
        trio.from_thread.run_sync(ready.set)
        await asyncio.to_thread(done.wait)
        return {}

    async with trio.open_nursery() as nursery:
        outcome: list[Any] = []

        async def run() -> None:
            outcome.append(
                await trio.to_thread.run_sync(
                    functools.partial(
                        ocpp_charger.boot,
                        tls.wss_url,
                        charger_id,
                        context=tls.client(cert),
                        then=stay,
                        charge_point=CertificateCharger,
                    )
                )
            )
            ready.set()

        nursery.start_soon(run)
        with trio.fail_after(15):
            await ready.wait()
        assert holder, outcome
        try:
            yield holder[0]
        finally:
            done.set()


async def sign_certificate(cp: CertificateCharger, csr: str) -> str:
    """The charger sends SignCertificate (on its own event loop); the answer's status."""
    from ocpp.v16 import call

    async def send() -> str:
        answer = await cp.call(call.SignCertificate(csr=csr))
        return str(answer.status)

    assert cp.loop is not None
    future = asyncio.run_coroutine_threadsafe(send(), cp.loop)
    return await trio.to_thread.run_sync(functools.partial(future.result, 30))


async def ctl(
    tls: TlsServer, *argv: str, stdin: bytes | None = None, human: bool = False
) -> tuple[int, Any, str]:
    """Run `voltaro ctl --json ARGV` (human: without --json; the text is returned)."""
    env = {**os.environ, "VOLTARO_CONTROL_SOCKET": tls.server.addresses.control_socket or ""}
    result = await trio.run_process(
        [sys.executable, "-m", "voltaro", "ctl", *([] if human else ["--json"]), *argv],
        capture_stdout=True,
        capture_stderr=True,
        check=False,
        env=env,
        stdin=stdin,
    )
    out = result.stdout.decode()
    if human:
        return result.returncode, out, result.stderr.decode()
    return result.returncode, (json.loads(out) if out.strip() else None), result.stderr.decode()
