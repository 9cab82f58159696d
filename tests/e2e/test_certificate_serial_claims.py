"""The local CA signs a certificate only for the charger's own identity, never for the
serial number it reported (issue 15). A charger's chargePointSerialNumber is whatever its
BootNotification says: had Voltaro signed a CSR whose CN is that serial, any admitted
charger could report another charger's serial, have it signed, and open that charger's
profile-3 identity with the certificate (the listener accepts a CN equal to the stored
serial number of the charger connecting)."""

from __future__ import annotations

import asyncio
import functools
import threading
from pathlib import Path
from typing import Any

import trio

from tests.e2e.certificate_support import sign_certificate
from tests.e2e.conftest import tls_server
from tests.e2e.test_certificate_signing import ca_init, make_csr, signings
from tests.support import ocpp_charger
from tests.support.certificate_charger import CertificateCharger
from tests.support.pki import TestCA
from voltaro.store import chargers


async def test_a_csr_for_a_reported_serial_number_is_not_signed(
    database_url: str, tmp_path: Path
) -> None:
    cert, key, _ = await ca_init(tmp_path / "ca")
    test_ca = TestCA(tmp_path / "pki")
    bundle = tmp_path / "client-ca.pem"
    bundle.write_bytes(test_ca.cert_path.read_bytes() + cert.read_bytes())
    async with tls_server(
        database_url,
        tmp_path,
        ca=test_ca,
        tls_client_ca=str(bundle),
        ca_certfile=str(cert),
        ca_keyfile=str(key),
    ) as tls:
        # The victim booted once with its serial number, then moved to profile 3.
        tls.server.run(chargers.add_charger, "VICTIM")
        first = await trio.to_thread.run_sync(
            functools.partial(
                ocpp_charger.boot,
                tls.wss_url,
                "VICTIM",
                context=tls.client(),
                boot_fields={"charge_point_serial_number": "SN-V"},
            )
        )
        assert first.accepted, first
        tls.server.run(chargers.set_security_profile, "VICTIM", 3)
        # Another admitted charger reports the victim's serial number and asks for it.
        tls.server.run(chargers.add_charger, "MALLORY")
        ready, done, holder = trio.Event(), threading.Event(), []

        async def stay(cp: Any, ws: Any) -> dict[str, Any]:
            cp.loop = asyncio.get_running_loop()
            holder.append(cp)
            trio.from_thread.run_sync(ready.set)
            await asyncio.to_thread(done.wait)
            return {}

        boot = functools.partial(
            ocpp_charger.boot,
            tls.wss_url,
            "MALLORY",
            context=tls.client(),
            then=stay,
            charge_point=CertificateCharger,
            boot_fields={"charge_point_serial_number": "SN-V"},
        )
        async with trio.open_nursery() as nursery:
            nursery.start_soon(functools.partial(trio.to_thread.run_sync, boot))
            with trio.fail_after(15):
                await ready.wait()
            try:
                assert await sign_certificate(holder[0], make_csr("SN-V")[0]) == "Rejected"
                # Its own identity is still signed.
                assert await sign_certificate(holder[0], make_csr("MALLORY")[0]) == "Accepted"
            finally:
                done.set()
        rejected = [s for s in signings(tls, "MALLORY") if s.status == "rejected"]
        assert len(rejected) == 1
        assert "SN-V" in (rejected[0].detail or "")
