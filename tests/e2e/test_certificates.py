"""InstallCertificate, GetInstalledCertificateIds and DeleteCertificate (OCPP 1.6 security
extension) over real TLS on loopback, through `voltaro ctl` and the HTTP API, with an
independent charger (tests/support/certificate_charger.py: the `ocpp` library's
ChargePoint over `websockets`, hash data from `cryptography`'s OCSP builder)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import httpx
import pytest

from tests.e2e.certificate_support import ctl, online
from tests.e2e.conftest import TlsServer, tls_server
from tests.support.certificate_charger import hash_data
from tests.support.pki import TestCA
from voltaro.settings import ApiScope, ApiToken
from voltaro.store import chargers
from voltaro.store import commands as audit

ADMIN = "admin-token-0123456789"
OPERATE = "operate-token-0123456789"
TLS_API = {
    "http_enabled": True,
    "http_port": 0,
    "api_tokens": (
        ApiToken(token=ADMIN, scope=ApiScope.ADMIN, name="admin"),
        ApiToken(token=OPERATE, scope=ApiScope.OPERATE, name="ops"),
    ),
}


@pytest.fixture
async def tls_api(database_url: str, tmp_path: Path) -> AsyncIterator[TlsServer]:
    async with tls_server(database_url, tmp_path, **TLS_API) as running:
        yield running


async def test_install_list_delete_round_trip(tls: TlsServer) -> None:
    tls.server.run(chargers.add_charger, "CP-C")
    root = TestCA(tls.ca.directory.parent / "roots", name="CSMS Root Two")
    pem = root.cert_path.read_text()
    expected = hash_data(pem)

    # The operator's helper, computed locally, agrees with the charger's own.
    code, computed, err = await ctl(tls, "certificates", "hash", str(root.cert_path))
    assert code == 0, err
    assert computed["issuer_name_hash"] == expected["issuerNameHash"]
    assert computed["issuer_key_hash"] == expected["issuerKeyHash"]
    assert computed["serial_number_hex"] == expected["serialNumber"]

    async with online(tls, "CP-C") as cp:
        code, answer, err = await ctl(
            tls, "certificates", "install", "CP-C", "--type", "central", str(root.cert_path)
        )
        assert code == 0, err
        assert answer["status"] == "Accepted"
        assert cp.store["CentralSystemRootCertificate"] == [pem]
        # Accepted: stored as installed until the charger lists it.
        code, shown, err = await ctl(tls, "certificates", "show", "CP-C")
        assert [c["source"] for c in shown["installed"]] == ["installed"]
        assert shown["installed"][0]["serial_number"] == expected["serialNumber"]

        code, listed, err = await ctl(tls, "certificates", "list", "CP-C", "--type", "central")
        assert code == 0, err
        assert listed["status"] == "Accepted"
        assert listed["details"]["certificates"] == [expected]
        code, shown, err = await ctl(tls, "certificates", "show", "CP-C")
        (held,) = shown["installed"]
        assert held["index"] == 1
        assert held["source"] == "reported"
        assert held["certificate_type"] == "CentralSystemRootCertificate"
        assert held["issuer_key_hash"] == expected["issuerKeyHash"]

        # Manufacturer roots: none.
        code, listed, err = await ctl(tls, "certificates", "list", "CP-C", "--type", "manufacturer")
        assert listed["status"] == "NotFound"

        # The human form: the answer, then the stored list with the numbers to delete by.
        code, text, err = await ctl(
            tls, "certificates", "list", "CP-C", "--type", "central", human=True
        )
        assert code == 0, err
        assert "GetInstalledCertificateIds: Accepted" in text
        assert "certificates held by CP-C:" in text
        assert expected["serialNumber"] in text
        assert "CentralSystemRootCertificate" in text
        code, deleted, err = await ctl(tls, "certificates", "delete", "CP-C", "--index", "1")
        assert code == 0, err
        assert deleted["status"] == "Accepted"
        assert cp.store["CentralSystemRootCertificate"] == []
        assert cp.received[-1] == ("DeleteCertificate", expected)
        code, shown, err = await ctl(tls, "certificates", "show", "CP-C")
        assert shown["installed"] == []

        # Deleting it again by its hash data: the charger has none (NotFound).
        code, again, err = await ctl(
            tls,
            "certificates",
            "delete",
            "CP-C",
            "--issuer-name-hash",
            expected["issuerNameHash"],
            "--issuer-key-hash",
            expected["issuerKeyHash"],
            "--serial",
            expected["serialNumber"],
        )
        assert code == 0, err
        assert again["status"] == "NotFound"

    # Audited like every command, without the PEM.
    rows = tls.server.run(audit.list_commands, "CP-C", 20)
    actions = [r["action"] for r in rows]
    for action in ("InstallCertificate", "GetInstalledCertificateIds", "DeleteCertificate"):
        assert action in actions
    install = next(r for r in rows if r["action"] == "InstallCertificate")
    assert install["status"] == "Accepted"
    assert "BEGIN CERTIFICATE" not in json.dumps(install["request"])
    assert install["request"]["certificate"]["subject"].startswith("CN=CSMS Root Two")
    assert install["request"]["certificate_hash_data"] == expected


async def test_every_answer_the_spec_allows_and_bad_input(tls: TlsServer) -> None:
    tls.server.run(chargers.add_charger, "CP-R")
    root = TestCA(tls.ca.directory.parent / "roots", name="Manufacturer Root")
    garbage = tls.ca.directory.parent / "garbage.pem"
    garbage.write_text("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
    async with online(tls, "CP-R") as cp:
        for status in ("Rejected", "Failed"):
            cp.answers["InstallCertificate"] = status
            code, answer, err = await ctl(
                tls,
                "certificates",
                "install",
                "CP-R",
                "--type",
                "manufacturer",
                str(root.cert_path),
            )
            assert code == 0, err
            assert answer["status"] == status
            code, shown, err = await ctl(tls, "certificates", "show", "CP-R")
            assert shown["installed"] == []  # nothing recorded as held
        # Garbage is refused before anything is sent.
        sent = len(cp.received)
        code, answer, err = await ctl(
            tls, "certificates", "install", "CP-R", "--type", "central", str(garbage)
        )
        assert code == 2
        assert "not a PEM certificate" in err
        assert len(cp.received) == sent
        # DeleteCertificate Failed keeps what is stored.
        cp.answers.pop("InstallCertificate")
        await ctl(
            tls, "certificates", "install", "CP-R", "--type", "manufacturer", str(root.cert_path)
        )
        cp.answers["DeleteCertificate"] = "Failed"
        code, answer, err = await ctl(tls, "certificates", "delete", "CP-R", "--index", "1")
        assert answer["status"] == "Failed"
        code, shown, err = await ctl(tls, "certificates", "show", "CP-R")
        assert len(shown["installed"]) == 1
        # An index that is not in the stored list: nothing sent, a clear reason.
        sent = len(cp.received)
        code, answer, err = await ctl(tls, "certificates", "delete", "CP-R", "--index", "7")
        assert code == 2
        assert "no certificate 7 for CP-R" in err
        assert len(cp.received) == sent
        # A charger that never answers: the command times out, the audit says so.
        cp.silent.add("GetInstalledCertificateIds")
        code, answer, err = await ctl(tls, "certificates", "list", "CP-R", "--type", "central")
        assert code != 0
        assert "did not answer" in err or "timeout" in err
    rows = tls.server.run(audit.list_commands, "CP-R", 20)
    listed = next(r for r in rows if r["action"] == "GetInstalledCertificateIds")
    assert listed["status"] is None
    assert "timeout" in (listed["error"] or "")


async def test_http_api_routes(tls_api: TlsServer) -> None:
    tls = tls_api
    tls.server.run(chargers.add_charger, "CP-A")
    root = TestCA(tls.ca.directory.parent / "roots", name="Api Root")
    pem = root.cert_path.read_text()
    expected = hash_data(pem)
    assert tls.server.addresses.http is not None
    host, port = tls.server.addresses.http

    def client(token: str) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=f"http://{host}:{port}", headers={"Authorization": f"Bearer {token}"}
        )

    async def call(
        token: str, run: Callable[[httpx.AsyncClient], Awaitable[httpx.Response]]
    ) -> httpx.Response:
        async with client(token) as api:
            return await run(api)

    base = "/charge_points/CP-A"
    async with online(tls, "CP-A") as cp:
        body = {"certificate_type": "CentralSystemRootCertificate", "certificate": pem}
        refused = await call(
            OPERATE, lambda api: api.post(f"{base}/commands/install-certificate", json=body)
        )
        assert refused.status_code == 403
        assert cp.store["CentralSystemRootCertificate"] == []
        installed = await call(
            ADMIN, lambda api: api.post(f"{base}/commands/install-certificate", json=body)
        )
        assert installed.status_code == 200, installed.text
        assert installed.json()["status"] == "Accepted"
        listed = await call(
            OPERATE,
            lambda api: api.post(
                f"{base}/commands/installed-certificates", json={"certificate_type": "central"}
            ),
        )
        assert listed.json()["details"]["certificates"] == [expected]
        held = await call(OPERATE, lambda api: api.get(f"{base}/certificates"))
        assert held.status_code == 200
        assert held.json()["installed"][0]["serial_number"] == expected["serialNumber"]
        wire = {
            "hash_algorithm": "SHA256",
            "issuer_name_hash": expected["issuerNameHash"],
            "issuer_key_hash": expected["issuerKeyHash"],
            "serial_number": expected["serialNumber"],
        }
        deleted = await call(
            ADMIN, lambda api: api.post(f"{base}/commands/delete-certificate", json=wire)
        )
        assert deleted.json()["status"] == "Accepted"
        assert cp.store["CentralSystemRootCertificate"] == []
        missing = await call(OPERATE, lambda api: api.get("/charge_points/NOPE/certificates"))
        assert missing.status_code == 404
