"""Security profiles 2 and 3 over real TLS on loopback (issue 15; OCPP 1.6 security
whitepaper A00.FR.3xx/4xx; OCTT TC_083/085/086/087 style).

A CA is made in the test; chargers are the `ocpp` library's asyncio ChargePoint over
`websockets` with an `ssl` context (tests/support/ocpp_charger.py), in worker threads.
"""

from __future__ import annotations

import functools
import os
import signal
import ssl
import sys
from pathlib import Path
from typing import Any

import pytest
import trio

from tests.e2e.conftest import TlsServer, tls_server
from tests.support import ocpp_charger
from tests.support.ocpp_charger import Outcome
from tests.support.pki import serial_of
from voltaro.domain.credentials import password_bytes
from voltaro.store import chargers

SIMULATE = Path(__file__).resolve().parents[2] / "scripts" / "simulate.py"
PASSWORD_HEX = "0123456789abcdef0123456789abcdef01234567"


async def connect(url: str, charger_id: str, **kwargs: Any) -> Outcome:
    return await trio.to_thread.run_sync(
        functools.partial(ocpp_charger.boot, url, charger_id, **kwargs)
    )


async def test_profile_3_client_certificates(
    tls: TlsServer, caplog: pytest.LogCaptureFixture
) -> None:
    tls.server.run(chargers.add_charger, "CP-3", security_profile=3)
    right = tls.ca.issue("CP-3", "cp3")
    wrong_cn = tls.ca.issue("CP-OTHER", "cp-other")
    expired = tls.ca.issue("CP-3", "cp3-expired", expired=True)
    foreign = tls.other_ca.issue("CP-3", "cp3-foreign")

    ok = await connect(tls.wss_url, "CP-3", context=tls.client(right))
    assert ok.accepted, ok
    assert ok.tls_version in ("TLSv1.2", "TLSv1.3")

    mismatch = await connect(tls.wss_url, "CP-3", context=tls.client(wrong_cn))
    assert mismatch.http_status == 401
    none = await connect(tls.wss_url, "CP-3", context=tls.client(None))
    assert none.http_status == 401
    for bad in (expired, foreign):
        refused = await connect(tls.wss_url, "CP-3", context=tls.client(bad))
        assert refused.boot_status is None, refused
        assert refused.error is not None  # the TLS handshake itself failed
    downgrade = await connect(tls.ws_url, "CP-3")
    assert downgrade.http_status == 401

    text = caplog.text
    assert "security: event=certificate_cn_mismatch charger=CP-3" in text
    assert "certificate CN CP-OTHER" in text
    assert "security: event=client_certificate_missing charger=CP-3" in text
    assert text.count("security: event=invalid_client_certificate") == 2
    assert "certificate has expired" in text
    assert "security: event=downgrade charger=CP-3" in text


async def test_profile_2_tls_and_basic_auth(
    tls: TlsServer, caplog: pytest.LogCaptureFixture
) -> None:
    tls.server.run(
        chargers.add_charger, "CP-2", password=password_bytes(PASSWORD_HEX), security_profile=2
    )
    raw = bytes.fromhex(PASSWORD_HEX)
    ok = await connect(tls.wss_url, "CP-2", context=tls.client(), password=raw)
    assert ok.accepted, ok
    wrong = await connect(tls.wss_url, "CP-2", context=tls.client(), password=b"x" * 20)
    assert wrong.http_status == 401
    missing = await connect(tls.wss_url, "CP-2", context=tls.client())
    assert missing.http_status == 401
    # The right password over plain ws:// is a downgrade: refused before the KDF.
    downgrade = await connect(tls.ws_url, "CP-2", password=raw)
    assert downgrade.http_status == 401
    assert "security: event=downgrade charger=CP-2" in caplog.text


async def test_tls_versions_and_whitepaper_suites(tls: TlsServer) -> None:
    tls.server.run(chargers.add_charger, "CP-0")
    old = await connect(
        tls.wss_url, "CP-0", context=tls.client(maximum_version=ssl.TLSVersion.TLSv1_1)
    )
    assert old.boot_status is None
    assert old.error is not None
    tls12 = await connect(
        tls.wss_url, "CP-0", context=tls.client(maximum_version=ssl.TLSVersion.TLSv1_2)
    )
    assert tls12.accepted, tls12
    assert tls12.tls_version == "TLSv1.2"
    # An ECDSA server certificate: TLS_ECDHE_ECDSA_WITH_AES_{128,256}_GCM (A00.FR.304/305).
    assert tls12.cipher in ("ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-ECDSA-AES256-GCM-SHA384")
    weak = await connect(
        tls.wss_url,
        "CP-0",
        context=tls.client(
            maximum_version=ssl.TLSVersion.TLSv1_2, ciphers="ECDHE-ECDSA-AES128-SHA256"
        ),
    )
    assert weak.boot_status is None
    tls13 = await connect(tls.wss_url, "CP-0", context=tls.client())
    assert tls13.tls_version == "TLSv1.3"


async def test_ws_and_wss_side_by_side_and_sighup_reload(tls: TlsServer) -> None:
    """A profile 0/1 charger may use either port; SIGHUP swaps the server certificate
    for new handshakes while a live wss:// connection goes on undisturbed."""
    tls.server.run(chargers.add_charger, "CP-1", password=password_bytes(PASSWORD_HEX))
    raw = bytes.fromhex(PASSWORD_HEX)
    plain = await connect(tls.ws_url, "CP-1", password=raw)
    assert plain.accepted, plain
    reloaded = trio.Event()
    heartbeat_after_reload: list[Any] = []

    async def across_reload(cp: Any, ws: Any) -> dict[str, Any]:
        from ocpp.v16 import call

        before = ws.transport.get_extra_info("ssl_object").getpeercert(binary_form=True)
        trio.from_thread.run_sync(ready.set)
        trio.from_thread.run(reloaded.wait)
        answer = await cp.call(call.Heartbeat())
        heartbeat_after_reload.append(answer.current_time)
        return {"cert": before}

    ready = trio.Event()
    new_cert = tls.ca.issue("localhost", "server-next", server=True)
    results: list[Outcome] = []
    async with trio.open_nursery() as nursery:

        async def live() -> None:
            results.append(
                await connect(
                    tls.wss_url, "CP-1", context=tls.client(), password=raw, then=across_reload
                )
            )

        nursery.start_soon(live)
        await ready.wait()
        os.replace(new_cert.cert, tls.server_cert.cert)
        os.replace(new_cert.key, tls.server_cert.key)
        os.kill(os.getpid(), signal.SIGHUP)
        # A new handshake sees the new certificate once the reload ran.
        with trio.fail_after(10):
            while True:
                probe = await trio.to_thread.run_sync(
                    lambda: ssl.get_server_certificate(
                        ("127.0.0.1", int(tls.wss_url.split(":")[2].split("/")[0])),
                        ca_certs=str(tls.ca.cert_path),
                    )
                )
                if serial_of(probe.encode()) == serial_of(tls.server_cert.cert.read_bytes()):
                    break
                await trio.sleep(0.05)
        reloaded.set()
    (live_outcome,) = results
    assert live_outcome.accepted, live_outcome
    assert live_outcome.error is None, live_outcome
    assert heartbeat_after_reload, "the live connection was dropped by the reload"


async def test_simulator_profiles_2_and_3(tls: TlsServer) -> None:
    """scripts/simulate.py over wss:// with a client certificate (profile 3) and with a
    hex AuthorizationKey password (profile 2)."""
    tls.server.run(chargers.add_charger, "SIM-1", security_profile=3)
    tls.ca.issue("SIM-1", "SIM-1")
    tls.server.run(
        chargers.add_charger, "PW-1", password=password_bytes(PASSWORD_HEX), security_profile=2
    )
    common = ["--chargers", "1", "--session-every", "0", "--duration", "3", "--ca"]
    runs = [
        [
            str(tls.ca.cert_path),
            "--id-prefix",
            "SIM-",
            "--cert",
            str(tls.ca.directory / "{id}.pem"),
            "--key",
            str(tls.ca.directory / "{id}.key"),
        ],
        [str(tls.ca.cert_path), "--id-prefix", "PW-", "--password", PASSWORD_HEX],
    ]
    for extra in runs:
        result = await trio.run_process(
            [sys.executable, str(SIMULATE), tls.wss_url, *common, *extra],
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
        assert result.returncode == 0, result.stderr.decode()
    for charger_id in ("SIM-1", "PW-1"):
        booted = tls.server.run(chargers.get_charger, charger_id)
        assert booted.last_boot is not None, charger_id


async def test_profile_3_serial_number_and_organisation(
    database_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The CN may hold the charge point's serial number instead of its id (whitepaper
    ed. 3: "the unique serial number of the Charge Point"); with
    certificate_organization set, the O must be the CPO's."""
    async with tls_server(
        database_url, tmp_path, certificate_organization="Voltaro Test CPO"
    ) as tls:
        tls.server.run(chargers.add_charger, "CP-9")
        # Its serial number is what its BootNotification said (here over profile 0).
        first = await connect(
            tls.wss_url,
            "CP-9",
            context=tls.client(),
            boot_fields={"charge_point_serial_number": "SN-0042"},
        )
        assert first.accepted, first
        tls.server.run(chargers.set_security_profile, "CP-9", 3)
        by_serial = tls.ca.issue("SN-0042", "cp9-serial")
        other_serial = tls.ca.issue("SN-9999", "cp9-other-serial")
        other_org = tls.ca.issue("CP-9", "cp9-other-org", org="Somebody Else")
        ok = await connect(tls.wss_url, "CP-9", context=tls.client(by_serial))
        assert ok.accepted, ok
        mismatch = await connect(tls.wss_url, "CP-9", context=tls.client(other_serial))
        assert mismatch.http_status == 401
        wrong_org = await connect(tls.wss_url, "CP-9", context=tls.client(other_org))
        assert wrong_org.http_status == 401
        # Another charger's serial number does not open this one.
        tls.server.run(chargers.add_charger, "CP-10", security_profile=3)
        foreign = await connect(tls.wss_url, "CP-10", context=tls.client(by_serial))
        assert foreign.http_status == 401
    text = caplog.text
    assert "certificate CN SN-9999" in text
    assert "security: event=certificate_organization_mismatch charger=CP-9" in text
    assert "certificate O Somebody Else" in text
