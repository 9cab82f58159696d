"""A charger that keeps root certificates in memory and answers the 1.6 security
extension's InstallCertificate, GetInstalledCertificateIds and DeleteCertificate, and
records the CertificateSigned chains it gets. The `ocpp` library's ChargePoint, with
its own certificate handling: the hash data come from `cryptography`'s OCSP request
builder (RFC 6960 CertID), not from Voltaro's code.

``answers`` forces a status per action ("Rejected", "Failed", ...) to test every answer
the spec allows; ``silent`` actions are never answered (the server must time out).
"""

from __future__ import annotations

import asyncio
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509 import ocsp
from ocpp.routing import on
from ocpp.v16 import ChargePoint, call_result
from ocpp.v16.enums import Action


def hash_data(pem: str) -> dict[str, str]:
    """CertificateHashData of a root certificate (its own issuer), SHA256."""
    cert = x509.load_pem_x509_certificate(pem.encode())
    request = ocsp.OCSPRequestBuilder().add_certificate(cert, cert, hashes.SHA256()).build()
    return {
        "hashAlgorithm": "SHA256",
        "issuerNameHash": request.issuer_name_hash.hex(),
        "issuerKeyHash": request.issuer_key_hash.hex(),
        "serialNumber": format(request.serial_number, "x"),
    }


class CertificateCharger(ChargePoint):
    def __init__(self, charger_id: str, connection: Any) -> None:
        super().__init__(charger_id, connection)
        self.store: dict[str, list[str]] = {
            "CentralSystemRootCertificate": [],
            "ManufacturerRootCertificate": [],
        }
        self.answers: dict[str, str] = {}
        self.silent: set[str] = set()
        self.received: list[tuple[str, dict[str, Any]]] = []
        self.chains: list[str] = []
        self.loop: asyncio.AbstractEventLoop | None = None  # set by the test harness

    async def _hold(self, action: str) -> None:
        if action in self.silent:
            await asyncio.sleep(3600)  # never answers: cancelled when the test ends

    @on(Action.install_certificate)
    async def on_install(self, certificate_type: str, certificate: str) -> Any:
        self.received.append(("InstallCertificate", {"type": certificate_type}))
        await self._hold("InstallCertificate")
        status = self.answers.get("InstallCertificate", "Accepted")
        if status == "Accepted":
            self.store[certificate_type].append(certificate)
        return call_result.InstallCertificate(status=status)

    @on(Action.get_installed_certificate_ids)
    async def on_get_installed(self, certificate_type: str) -> Any:
        self.received.append(("GetInstalledCertificateIds", {"type": certificate_type}))
        await self._hold("GetInstalledCertificateIds")
        held = [hash_data(pem) for pem in self.store[certificate_type]]
        if not held:
            return call_result.GetInstalledCertificateIds(status="NotFound")
        return call_result.GetInstalledCertificateIds(status="Accepted", certificate_hash_data=held)

    @on(Action.delete_certificate)
    async def on_delete(self, certificate_hash_data: dict[str, str]) -> Any:
        wanted = {
            "hashAlgorithm": certificate_hash_data["hash_algorithm"],
            "issuerNameHash": certificate_hash_data["issuer_name_hash"],
            "issuerKeyHash": certificate_hash_data["issuer_key_hash"],
            "serialNumber": certificate_hash_data["serial_number"],
        }
        self.received.append(("DeleteCertificate", wanted))
        await self._hold("DeleteCertificate")
        forced = self.answers.get("DeleteCertificate")
        if forced is not None:
            return call_result.DeleteCertificate(status=forced)
        for pems in self.store.values():
            for pem in pems:
                if hash_data(pem) == wanted:
                    pems.remove(pem)
                    return call_result.DeleteCertificate(status="Accepted")
        return call_result.DeleteCertificate(status="NotFound")

    @on(Action.certificate_signed)
    async def on_certificate_signed(self, certificate_chain: str) -> Any:
        self.received.append(("CertificateSigned", {}))
        await self._hold("CertificateSigned")
        status = self.answers.get("CertificateSigned", "Accepted")
        if status == "Accepted":
            self.chains.append(certificate_chain)
        return call_result.CertificateSigned(status=status)
