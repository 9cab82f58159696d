"""scripts/simulate.py and the 1.6 security extension's certificates (issue 15): it
answers InstallCertificate, GetInstalledCertificateIds and DeleteCertificate from memory,
and with --sign-certificate renews its client certificate by SignCertificate and
reconnects (profile 3) with the chain CertificateSigned brought."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import trio

from tests.e2e.certificate_support import ctl
from tests.e2e.conftest import tls_server
from tests.e2e.test_certificate_signing import ca_init, signings
from tests.support.pki import TestCA
from voltaro.store import chargers

SIMULATE = Path(__file__).resolve().parents[2] / "scripts" / "simulate.py"


async def test_simulator_renews_its_certificate_and_answers_certificate_commands(
    database_url: str, tmp_path: Path
) -> None:
    cert, key, _ = await ca_init(tmp_path / "ca")
    test_ca = TestCA(tmp_path / "pki")
    bundle = tmp_path / "client-ca.pem"
    bundle.write_bytes(test_ca.cert_path.read_bytes() + cert.read_bytes())
    root = TestCA(tmp_path / "roots", name="Sim Root")
    async with tls_server(
        database_url,
        tmp_path,
        ca=test_ca,
        tls_client_ca=str(bundle),
        ca_certfile=str(cert),
        ca_keyfile=str(key),
    ) as tls:
        tls.server.run(chargers.add_charger, "SIM-1", security_profile=3)
        tls.ca.issue("SIM-1", "SIM-1")
        argv = [
            sys.executable,
            str(SIMULATE),
            tls.wss_url,
            "--chargers",
            "1",
            "--session-every",
            "0",
            "--duration",
            "120",  # terminated when the test is done
            "--ca",
            str(tls.ca.cert_path),
            "--cert",
            str(tls.ca.directory / "{id}.pem"),
            "--key",
            str(tls.ca.directory / "{id}.key"),
            "--sign-certificate",
        ]
        output = bytearray()
        process = await trio.lowlevel.open_process(
            argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
        )
        assert process.stdout is not None
        stdout = process.stdout
        async with trio.open_nursery() as nursery:

            async def read() -> None:
                async for chunk in stdout:
                    output.extend(chunk)

            nursery.start_soon(read)
            try:
                with trio.fail_after(60):
                    while b"connected with its signed certificate" not in output:  # noqa: ASYNC110
                        await trio.sleep(0.1)
                with trio.fail_after(30):
                    while not tls.server.run(chargers.get_charger, "SIM-1").connectors:  # noqa: ASYNC110
                        await trio.sleep(0.1)
                code, installed, err = await ctl(
                    tls,
                    "certificates",
                    "install",
                    "SIM-1",
                    "--type",
                    "manufacturer",
                    str(root.cert_path),
                )
                assert code == 0, err
                assert installed["status"] == "Accepted"
                code, listed, err = await ctl(
                    tls, "certificates", "list", "SIM-1", "--type", "manufacturer"
                )
                assert listed["status"] == "Accepted", err
                (held,) = listed["details"]["certificates"]
                assert held["serialNumber"] == format(root.cert.serial_number, "x")
                code, deleted, err = await ctl(
                    tls, "certificates", "delete", "SIM-1", "--index", "1"
                )
                assert deleted["status"] == "Accepted", err
                code, listed, err = await ctl(
                    tls, "certificates", "list", "SIM-1", "--type", "manufacturer"
                )
                assert listed["status"] == "NotFound", err
            finally:
                process.terminate()
                await process.wait()
        (signed,) = signings(tls, "SIM-1")
        assert signed.status == "delivered", signed
        serial = signed.serial_number
        assert serial
    text = output.decode()
    assert f"SIM-1: installed its signed certificate (serial {serial}); reconnecting" in text
    # The reconnection used it: profile 3 accepted the handshake with the new chain.
    assert f"SIM-1: connected with its signed certificate (serial {serial})" in text
