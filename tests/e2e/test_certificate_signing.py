"""SignCertificate → CertificateSigned (OCPP 1.6 security whitepaper ed. 3, A02/A03) over
real TLS on loopback, with an independent charger (the `ocpp` library's ChargePoint over
`websockets`; its key and CSR made here with `cryptography`): the local CA made by
`voltaro ca init`, an external CA hook (working, failing, too slow), bad CSRs, no CA, a
charger that refuses or never answers CertificateSigned, and the renewed certificate
used for the next profile 3 connection."""

from __future__ import annotations

import functools
import json
import logging
import os
import shlex
import stat
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import trio
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from tests.e2e.certificate_support import online, sign_certificate
from tests.e2e.conftest import TlsServer, tls_server
from tests.support import ocpp_charger
from tests.support.pki import TestCA
from voltaro.store import certificates, chargers
from voltaro.store import commands as audit


def make_csr(cn: str, *, org: str | None = "Voltaro Test CPO", key: Any = None) -> tuple[str, Any]:
    key = key or ec.generate_private_key(ec.SECP256R1())
    names = [x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    if org:
        names.insert(0, x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name(names))
        .sign(key, hashes.SHA256())
    )
    return csr.public_bytes(serialization.Encoding.PEM).decode(), key


async def ca_init(directory: Path) -> tuple[Path, Path, str]:
    done = await trio.run_process(
        [
            sys.executable,
            "-m",
            "voltaro",
            "ca",
            "init",
            "--dir",
            str(directory),
            "--cn",
            "Test Charger CA",
            "--org",
            "Voltaro Test CPO",
        ],
        capture_stdout=True,
        capture_stderr=True,
    )
    return directory / "ca.pem", directory / "ca.key", done.stdout.decode()


async def ask(cp: Any, csr: str) -> str:
    return await sign_certificate(cp, csr)


async def wait_for(predicate: Any, seconds: float = 15) -> None:
    """Polls what the server stored (the database, a second handle) or the charger got."""
    with trio.fail_after(seconds):
        while True:
            if predicate():
                return
            await trio.sleep(0.05)


def signings(tls: TlsServer, charger_id: str) -> list[certificates.Signing]:
    return tls.server.run(certificates.recent_signings, charger_id)


async def security_counts(tls: TlsServer) -> dict[str, int]:
    env = {**os.environ, "VOLTARO_CONTROL_SOCKET": tls.server.addresses.control_socket or ""}
    done = await trio.run_process(
        [sys.executable, "-m", "voltaro", "ctl", "--json", "security", "events"],
        capture_stdout=True,
        env=env,
    )
    counts: dict[str, int] = json.loads(done.stdout)["counts"]
    return counts


async def test_renewal_end_to_end_with_the_local_ca(
    database_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    cert, key, printed = await ca_init(tmp_path / "ca")
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert "PRIVATE KEY" not in printed
    assert str(key) in printed
    # Refuses to overwrite.
    again = await trio.run_process(
        [sys.executable, "-m", "voltaro", "ca", "init", "--dir", str(tmp_path / "ca")],
        capture_stderr=True,
        check=False,
    )
    assert again.returncode != 0
    assert b"exists; not overwritten" in again.stderr
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
        certificate_organization="Voltaro Test CPO",
    ) as tls:
        tls.server.run(chargers.add_charger, "CP-S", security_profile=3)
        first = tls.ca.issue("CP-S", "cp-s-first")
        csr, charger_key = make_csr("CP-S")
        async with online(tls, "CP-S", cert=first) as cp:
            assert await ask(cp, csr) == "Accepted"
            # Online until the server has its answer to CertificateSigned.
            await wait_for(lambda: signings(tls, "CP-S")[0].status == "delivered")
        (chain,) = cp.chains
        leaf = x509.load_pem_x509_certificates(chain.encode())[0]
        ca_cert = x509.load_pem_x509_certificate(cert.read_bytes())
        assert leaf.issuer == ca_cert.subject
        assert leaf.public_key().public_numbers() == charger_key.public_key().public_numbers()
        assert leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "CP-S"
        (done,) = signings(tls, "CP-S")
        assert done.serial_number == format(leaf.serial_number, "x")
        assert done.subject == "CN=CP-S,O=Voltaro Test CPO"
        # The renewed certificate is the charger's next profile 3 identity.
        renewed = tmp_path / "renewed.pem"
        renewed_key = tmp_path / "renewed.key"
        renewed.write_text(chain)
        renewed_key.write_bytes(
            charger_key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        outcome = await trio.to_thread.run_sync(
            functools.partial(
                ocpp_charger.boot,
                tls.wss_url,
                "CP-S",
                context=ocpp_charger.client_context(tls.ca.cert_path, renewed, renewed_key),
            )
        )
        assert outcome.accepted, outcome
        # Audited like every command, without the PEM.
        rows = tls.server.run(audit.list_commands, "CP-S", 20)
        signed = next(r for r in rows if r["action"] == "CertificateSigned")
        assert signed["status"] == "Accepted"
        assert signed["actor"] == "voltaro (SignCertificate)"
        assert "BEGIN CERTIFICATE" not in json.dumps(signed["request"])
        assert format(leaf.serial_number, "x") in signed["request"]["certificate_chain"]
    assert "PRIVATE KEY" not in caplog.text
    assert "SignCertificate accepted" in caplog.text


async def test_bad_csrs_are_rejected_and_recorded(
    database_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cert, key, _ = await ca_init(tmp_path / "ca")
    async with tls_server(
        database_url,
        tmp_path,
        ca_certfile=str(cert),
        ca_keyfile=str(key),
        certificate_organization="Voltaro Test CPO",
    ) as tls:
        tls.server.run(chargers.add_charger, "CP-B")
        cases = {
            "wrong CN": make_csr("CP-OTHER")[0],
            "small key": make_csr("CP-B", key=rsa.generate_private_key(65537, 1024))[0],
            "wrong O": make_csr("CP-B", org="Somebody Else")[0],
            "garbage": (
                "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n"
            ),
            "P-521": make_csr("CP-B", key=ec.generate_private_key(ec.SECP521R1()))[0],
        }
        async with online(tls, "CP-B") as cp:
            for name, csr in cases.items():
                assert await ask(cp, csr) == "Rejected", name
            # An RSA 2048 key with the right CN and O is fine.
            good = make_csr("CP-B", key=rsa.generate_private_key(65537, 2048))[0]
            assert await ask(cp, good) == "Accepted"
            await wait_for(lambda: signings(tls, "CP-B")[0].status == "delivered")
        assert [r[0] for r in cp.received].count("CertificateSigned") == 1
        recorded = signings(tls, "CP-B")
        rejected = [s.detail or "" for s in recorded if s.status == "rejected"]
        assert len(rejected) == 5
        text = "\n".join(rejected)
        assert "subject CN CP-OTHER is not the charge point's identity CP-B" in text
        assert "RSA key of 1024 bits; at least 2048 are required" in text
        assert "subject O Somebody Else is not 'Voltaro Test CPO'" in text
        assert "not a PEM certificate signing request" in text
        assert "EC curve secp521r1" in text
        assert (await security_counts(tls))["csr_rejected"] == 5
        assert "security: event=csr_rejected charger=CP-B" in caplog.text


async def test_without_a_ca_the_request_is_rejected(tls: TlsServer) -> None:
    tls.server.run(chargers.add_charger, "CP-N")
    async with online(tls, "CP-N") as cp:
        assert await ask(cp, make_csr("CP-N")[0]) == "Rejected"
    (row,) = signings(tls, "CP-N")
    assert row.status == "rejected"
    assert row.detail == "no CA configured (ca_certfile and ca_keyfile, or ca_hook)"


def hook_script(tmp_path: Path, ca: TestCA, body: str) -> str:
    """A CA hook in Python: reads the CSR on stdin; ``body`` decides what it does."""
    key = ca.directory / "hook-ca.key"
    key.write_bytes(
        ca.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    script = tmp_path / "hook.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import datetime as dt, sys, time
            from cryptography import x509
            from cryptography.hazmat.primitives import hashes, serialization
            csr = x509.load_pem_x509_csr(sys.stdin.buffer.read())
            ca = x509.load_pem_x509_certificate(open({str(ca.cert_path)!r}, "rb").read())
            key = serialization.load_pem_private_key(open({str(key)!r}, "rb").read(), None)
            now = dt.datetime.now(dt.UTC)
            """
        )
        + textwrap.dedent(body)
    )
    return shlex.join([sys.executable, str(script)])


SIGN = """
cert = (x509.CertificateBuilder().subject_name(csr.subject).issuer_name(ca.subject)
    .public_key(csr.public_key()).serial_number(x509.random_serial_number())
    .not_valid_before(now).not_valid_after(now + dt.timedelta(days=30))
    .sign(key, hashes.SHA256()))
sys.stdout.buffer.write(cert.public_bytes(serialization.Encoding.PEM))
"""


@pytest.mark.parametrize(
    ("body", "status", "detail"),
    [
        (SIGN, "delivered", "CertificateSigned Accepted"),
        ("sys.stderr.write('HSM offline\\n'); sys.exit(3)\n", "failed", "status 3: HSM offline"),
        ("time.sleep(30)\n", "failed", "did not answer within 1 s"),
        ("print('not a certificate')\n", "failed", "no PEM certificate"),
    ],
    ids=["signs", "fails", "too-slow", "garbage"],
)
async def test_external_ca_hook(
    database_url: str, tmp_path: Path, body: str, status: str, detail: str
) -> None:
    ca = TestCA(tmp_path / "pki")
    hook = hook_script(tmp_path, ca, body)
    async with tls_server(database_url, tmp_path, ca=ca, ca_hook=hook, ca_hook_timeout=1.0) as tls:
        tls.server.run(chargers.add_charger, "CP-H")
        async with online(tls, "CP-H") as cp:
            # Answered before the CA is asked (A02: the answer does not wait for it).
            assert await ask(cp, make_csr("CP-H")[0]) == "Accepted"
            await wait_for(lambda: signings(tls, "CP-H")[0].status != "accepted", 40)
        (row,) = signings(tls, "CP-H")
        assert row.status == status, row
        assert detail in (row.detail or "")
        if status == "delivered":
            (chain,) = cp.chains
            assert x509.load_pem_x509_certificate(chain.encode()).issuer == ca.cert.subject
        else:
            assert not cp.chains
            assert (await security_counts(tls))["certificate_signing_failed"] == 1


@pytest.mark.parametrize("answer", ["Rejected", "silent"])
async def test_charger_refuses_or_never_answers_certificate_signed(
    database_url: str, tmp_path: Path, answer: str
) -> None:
    cert, key, _ = await ca_init(tmp_path / "ca")
    async with tls_server(
        database_url, tmp_path, ca_certfile=str(cert), ca_keyfile=str(key)
    ) as tls:
        tls.server.run(chargers.add_charger, "CP-Q")
        async with online(tls, "CP-Q") as cp:
            if answer == "silent":
                cp.silent.add("CertificateSigned")
            else:
                cp.answers["CertificateSigned"] = answer
            assert await ask(cp, make_csr("CP-Q", org=None)[0]) == "Accepted"
            await wait_for(lambda: signings(tls, "CP-Q")[0].status != "accepted")
        (row,) = signings(tls, "CP-Q")
        rows = tls.server.run(audit.list_commands, "CP-Q", 20)
        signed = next(r for r in rows if r["action"] == "CertificateSigned")
        if answer == "silent":
            assert row.status == "failed"
            assert "not delivered: timeout" in (row.detail or "")
            assert signed["status"] is None
            assert "timeout" in (signed["error"] or "")
        else:
            assert row.status == "refused"
            assert signed["status"] == "Rejected"
        assert row.serial_number  # it was signed; the charger did not take it


async def test_a_charger_gone_before_its_certificate_is_signed(
    database_url: str, tmp_path: Path
) -> None:
    """Signing outlives the connection that asked (it runs in the signer's own nursery):
    the charger leaves right after the answer; the signing ends recorded as not
    delivered (offline), never stuck at "accepted"."""
    ca = TestCA(tmp_path / "pki")
    hook = hook_script(tmp_path, ca, "time.sleep(1.5)\n" + SIGN)
    async with tls_server(database_url, tmp_path, ca=ca, ca_hook=hook) as tls:
        tls.server.run(chargers.add_charger, "CP-G")
        async with online(tls, "CP-G") as cp:
            assert await ask(cp, make_csr("CP-G")[0]) == "Accepted"
        await wait_for(lambda: signings(tls, "CP-G")[0].status != "accepted", 40)
        (row,) = signings(tls, "CP-G")
        assert row.status == "failed", row
        assert "but not delivered: offline" in (row.detail or "")
        assert row.serial_number  # signed all the same
        assert not cp.chains
