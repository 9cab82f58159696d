"""The simulator's side of the OCPP 1.6 security extension's certificates (whitepaper
ed. 3): root certificates kept in memory (InstallCertificate, GetInstalledCertificateIds,
DeleteCertificate), and its own client certificate renewed by SignCertificate →
CertificateSigned, then used for its next wss:// connection (profile 3).

Kept apart from simulate.py: ``CertificateHandlers`` is mixed into its ChargePoint, and
``ChargerCertificates`` is the per-charger state. The hash data are computed with
`cryptography`'s OCSP request builder (RFC 6960 CertID), not Voltaro's code.
"""

from __future__ import annotations

import logging
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import ocsp
from cryptography.x509.oid import NameOID
from ocpp.routing import after, on
from ocpp.v16 import call, call_result
from ocpp.v16.enums import Action

log = logging.getLogger("simulate")

TYPES = ("CentralSystemRootCertificate", "ManufacturerRootCertificate")


def hash_data(pem: str) -> dict[str, str]:
    """CertificateHashData of a root (its own issuer), SHA256."""
    cert = x509.load_pem_x509_certificate(pem.encode())
    request = ocsp.OCSPRequestBuilder().add_certificate(cert, cert, hashes.SHA256()).build()
    return {
        "hashAlgorithm": "SHA256",
        "issuerNameHash": request.issuer_name_hash.hex(),
        "issuerKeyHash": request.issuer_key_hash.hex(),
        "serialNumber": format(request.serial_number, "x"),
    }


@dataclass
class ChargerCertificates:
    charger_id: str
    organization: str | None = None
    directory: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="sim-certs-")))
    roots: dict[str, list[str]] = field(default_factory=lambda: {t: [] for t in TYPES})
    pending_key: ec.EllipticCurvePrivateKey | None = None
    # The signed certificate and key files, once a CertificateSigned was installed.
    client_pair: tuple[str, str] | None = None
    serial: str | None = None

    def new_csr(self) -> str:
        """A fresh EC P-256 key (kept until its certificate arrives) and its CSR."""
        self.pending_key = ec.generate_private_key(ec.SECP256R1())
        names = [x509.NameAttribute(NameOID.COMMON_NAME, self.charger_id)]
        if self.organization:
            names.insert(0, x509.NameAttribute(NameOID.ORGANIZATION_NAME, self.organization))
        csr = (
            x509.CertificateSigningRequestBuilder()
            .subject_name(x509.Name(names))
            .sign(self.pending_key, hashes.SHA256())
        )
        return csr.public_bytes(serialization.Encoding.PEM).decode()

    def install_chain(self, chain: str) -> str:
        """Accepted or Rejected (CertificateSigned.conf): the chain must be for the key
        of our last CSR."""
        try:
            leaf = x509.load_pem_x509_certificates(chain.encode())[0]
        except ValueError:
            return "Rejected"
        key = self.pending_key
        if key is None or leaf.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        ) != key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        ):
            return "Rejected"
        cert_path = self.directory / f"{self.charger_id}.pem"
        key_path = self.directory / f"{self.charger_id}.key"
        fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(
                key.private_bytes(
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.PKCS8,
                    serialization.NoEncryption(),
                )
            )
        cert_path.write_text(chain)
        self.client_pair = (str(cert_path), str(key_path))
        self.serial = format(leaf.serial_number, "x")
        self.pending_key = None
        return "Accepted"


class CertificateHandlers:
    """@on handlers for the CSMS's certificate CALLs; mixed into simulate.SimCharger,
    which has ``sim`` (with ``certificates`` and ``reconnect``)."""

    sim: Any

    @on(Action.install_certificate)
    async def on_install_certificate(self, certificate_type: str, certificate: str) -> Any:
        try:
            x509.load_pem_x509_certificate(certificate.encode())
        except ValueError:
            return call_result.InstallCertificate(status="Rejected")
        self.sim.certificates.roots[certificate_type].append(certificate)
        return call_result.InstallCertificate(status="Accepted")

    @on(Action.get_installed_certificate_ids)
    async def on_get_installed_certificate_ids(self, certificate_type: str) -> Any:
        held = [hash_data(pem) for pem in self.sim.certificates.roots[certificate_type]]
        if not held:
            return call_result.GetInstalledCertificateIds(status="NotFound")
        return call_result.GetInstalledCertificateIds(status="Accepted", certificate_hash_data=held)

    @on(Action.delete_certificate)
    async def on_delete_certificate(self, certificate_hash_data: dict[str, str]) -> Any:
        wanted = (
            certificate_hash_data["issuer_name_hash"].lower(),
            certificate_hash_data["issuer_key_hash"].lower(),
            certificate_hash_data["serial_number"].lower().lstrip("0"),
        )
        for pems in self.sim.certificates.roots.values():
            for pem in pems:
                mine = hash_data(pem)
                if (mine["issuerNameHash"], mine["issuerKeyHash"], mine["serialNumber"]) == wanted:
                    pems.remove(pem)
                    return call_result.DeleteCertificate(status="Accepted")
        return call_result.DeleteCertificate(status="NotFound")

    @on(Action.certificate_signed)
    async def on_certificate_signed(self, certificate_chain: str) -> Any:
        status = self.sim.certificates.install_chain(certificate_chain)
        if status == "Accepted":
            print(
                f"[simulate] {self.sim.charger_id}: installed its signed certificate "
                f"(serial {self.sim.certificates.serial}); reconnecting with it",
                flush=True,
            )
        return call_result.CertificateSigned(status=status)

    @after(Action.certificate_signed)
    async def after_certificate_signed(self, certificate_chain: str) -> None:
        # Once the answer is out: reconnect so the new certificate is used now.
        if self.sim.certificates.client_pair is not None:
            self.sim.reconnect_soon()


async def request_certificate(cp: Any, certificates: ChargerCertificates) -> str:
    """Send SignCertificate with a new key's CSR; the answer's status."""
    answer = await cp.call(call.SignCertificate(csr=certificates.new_csr()))
    log.info("%s: SignCertificate %s", certificates.charger_id, answer.status)
    return str(answer.status)
