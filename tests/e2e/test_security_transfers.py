"""The 1.6 security extension's ExtendedTriggerMessage, GetLog with LogStatusNotification
and SignedUpdateFirmware with SignedFirmwareStatusNotification (issue 15): through the
command layer (control socket, ctl, HTTP API), audited, every answer and status the
schemas allow, stored as history per charger with its requestId and published live.
The charger is independent of the server: raw OCPP-J frames, or the `ocpp` library's
asyncio ChargePoint over `websockets` (which checks what it receives against its schemas).
"""

from __future__ import annotations

import functools
import hashlib
import json
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import trio
from sqlalchemy import update

from tests.api.conftest import ADMIN, OPERATE, READ, api
from tests.api.conftest import client as api_client
from tests.e2e.conftest import RunningServer
from tests.e2e.control_client import ControlClient
from tests.e2e.test_control import online
from tests.e2e.test_ctl import ctl
from tests.e2e.test_file_transfers import (
    UPLOAD_LIMIT,
    add_firmware,
    control,
    http_server,
    image,
    request_answered,
)
from tests.support import ocpp_charger
from tests.support.signing import make_signer, sign, verifies
from voltaro.domain.firmware import SignedFirmwareStatus, TransferKind, UploadLogStatus
from voltaro.domain.timestamps import utc_now
from voltaro.service.files import hash_token
from voltaro.store import chargers, commands, firmware
from voltaro.store.schema import FileTokenRow

__all__ = ["api", "http_server"]

EXTENDED_MESSAGES = (
    "BootNotification",
    "LogStatusNotification",
    "FirmwareStatusNotification",
    "Heartbeat",
    "MeterValues",
    "SignChargePointCertificate",
    "StatusNotification",
)


def history(server: RunningServer, kind: TransferKind) -> list[tuple[str, int | None]]:
    rows = server.run(firmware.transfer_history, "CP-1", kind=kind, limit=100)
    return [(h.status, h.request_id) for h in reversed(rows)]


async def events_named(client: ControlClient, name: str, count: int) -> list[dict[str, Any]]:
    """The next ``count`` events ``name`` (the ones already read are kept by the client)."""
    seen = [e["data"] for e in client.events if e.get("event") == name]
    with trio.fail_after(10):
        while len(seen) < count:
            frame = await client.read()
            if frame.get("type") == "event" and frame["event"] == name:
                seen.append(frame["data"])
    return seen[:count]


# --- ExtendedTriggerMessage -----------------------------------------------------------


async def test_extended_trigger_every_message_and_answer(server: RunningServer) -> None:
    cp = await online(server)
    client = await control(server)
    answers = ("Accepted", "Rejected", "NotImplemented")
    sent = 0
    for i, message in enumerate(m for m in EXTENDED_MESSAGES if m != "BootNotification"):
        status = answers[i % 3]
        call, response = await request_answered(
            client,
            cp,
            "command",
            {"status": status},
            charger_id="CP-1",
            action="trigger-ext",
            args={"requested_message": message, "connector_id": 1},
        )
        sent += 1
        assert call[2:] == [
            "ExtendedTriggerMessage",
            {"requestedMessage": message, "connectorId": 1},
        ]
        assert response["ok"], response
        assert response["result"] == {"action": "ExtendedTriggerMessage", "status": status}
    audit = server.run(commands.list_commands, "CP-1")
    assert len(audit) == sent
    assert audit[0]["action"] == "ExtendedTriggerMessage"
    assert audit[0]["request"] == {"requested_message": "StatusNotification", "connector_id": 1}
    assert {a["status"] for a in audit} == set(answers)
    # Refused before anything is sent: an unknown message, DiagnosticsStatusNotification
    # (TriggerMessage's, not the extension's), a negative connector, and BootNotification
    # after an Accepted boot (errata 3.40 holds for the extended trigger too).
    for args, code, words in (
        ({"requested_message": "Coffee"}, "bad_arguments", "SignChargePointCertificate"),
        ({"requested_message": "DiagnosticsStatusNotification"}, "bad_arguments", "one of"),
        ({"requested_message": "Heartbeat", "connector_id": -1}, "bad_arguments", "connector"),
        ({"requested_message": "BootNotification"}, "not_allowed", "errata 3.40"),
    ):
        refused = await client.command("CP-1", "trigger-ext", **args)
        assert not refused["ok"], args
        assert refused["error"]["code"] == code
        assert words in refused["error"]["message"]
    await cp.expect_silence()
    assert len(server.run(commands.list_commands, "CP-1")) == sent
    await client.aclose()
    await cp.close()


async def test_extended_trigger_sign_certificate_renewal_with_ctl(server: RunningServer) -> None:
    """The operator's certificate renewal: ExtendedTriggerMessage SignChargePointCertificate
    (OCTT TC_074_CSMS starts so); the charger then sends SignCertificate."""
    cp = await online(server)
    results: list[Any] = []
    async with trio.open_nursery() as nursery:

        async def run() -> None:
            results.append(
                await ctl(server, "--json", "trigger-ext", "CP-1", "SignChargePointCertificate")
            )

        nursery.start_soon(run)
        call = await cp.next_call()
        assert call[2:] == [
            "ExtendedTriggerMessage",
            {"requestedMessage": "SignChargePointCertificate"},
        ]
        await cp.answer(call, {"status": "Accepted"})
    assert results[0].returncode == 0, results[0].stderr
    assert json.loads(results[0].stdout)["status"] == "Accepted"
    bad = await ctl(server, "trigger-ext", "CP-1", "Coffee")
    assert bad.returncode != 0
    assert b"message must be one of" in bad.stderr
    await cp.close()


# --- GetLog and LogStatusNotification -------------------------------------------------


async def test_get_log_to_voltaro_upload_then_listed_and_fetched(
    http_server: RunningServer, tmp_path: Path
) -> None:
    server = http_server
    assert server.addresses.http is not None
    host, port = server.addresses.http
    cp = await online(server)
    client = await control(server)
    assert (await client.request("subscribe", {"frames": False}))["ok"]
    call, response = await request_answered(
        client,
        cp,
        "logs.get",
        {"status": "Accepted", "filename": "security-CP-1.log"},
        charger_id="CP-1",
        oldest="2030-01-01T00:00:00+01:00",
        latest="2030-01-02T00:00:00Z",
        retries=2,
        retry_interval=30,
    )
    assert call[2] == "GetLog"
    payload = call[3]
    request_id = payload["requestId"]
    location = payload["log"]["remoteLocation"]
    assert location.startswith(f"http://{host}:{port}/files/upload/")
    assert payload == {
        "log": {
            "remoteLocation": location,
            "oldestTimestamp": "2029-12-31T23:00:00Z",
            "latestTimestamp": "2030-01-02T00:00:00Z",
        },
        "logType": "SecurityLog",  # the default
        "requestId": request_id,
        "retries": 2,
        "retryInterval": 30,
    }
    assert response["ok"], response
    assert response["result"] == {
        "action": "GetLog",
        "status": "Accepted",
        "details": {"request_id": request_id, "filename": "security-CP-1.log"},
    }
    token = urlsplit(location).path.split("/")[3]
    audit = server.run(commands.list_commands, "CP-1")[0]
    assert audit["action"] == "GetLog"
    assert token not in json.dumps(audit["request"])
    assert "securitylog upload" in audit["request"]["remote_location"]
    assert (
        await cp.call("LogStatusNotification", {"status": "Uploading", "requestId": request_id})
        == {}
    )
    content = b"2030-01-01T10:00:00Z FirmwareUpdated\n" * 100
    async with httpx.AsyncClient(timeout=10) as http:
        put = await http.put(location + "security-CP-1.log", content=content)
        assert put.status_code == 201, put.text
        # A token is one upload: the same URL again is refused and stores nothing.
        again = await http.put(location + "other.log", content=b"more")
        assert again.status_code == 410
    assert (
        await cp.call("LogStatusNotification", {"status": "Uploaded", "requestId": request_id})
        == {}
    )
    assert history(server, TransferKind.LOG) == [
        ("Uploading", request_id),
        ("Uploaded", request_id),
    ]
    live = await events_named(client, "log.status", 2)
    assert [(e["status"], e["request_id"]) for e in live] == [
        ("Uploading", request_id),
        ("Uploaded", request_id),
    ]
    shown = (await client.request("chargers.show", {"charger_id": "CP-1"}))["result"]
    assert shown["log_status"]["status"] == "Uploaded"
    assert shown["log_status"]["request_id"] == request_id
    listed = (await client.request("logs.list", {"charger_id": "CP-1"}))["result"]
    assert [(f["kind"], f["name"], f["size"]) for f in listed] == [
        ("securitylog", "security-CP-1.log", len(content))
    ]
    assert listed[0]["sha256"] == hashlib.sha256(content).hexdigest()
    # Diagnostics files are not logs (and the other way round).
    assert (await client.request("diagnostics.list", {}))["result"] == []
    # ctl: list (human and JSON) and fetch.
    human = await ctl(server, "logs", "list", "CP-1")
    assert human.returncode == 0, human.stderr
    assert b"security-CP-1.log" in human.stdout
    target = tmp_path / "fetched.log"
    fetched = await ctl(server, "logs", "fetch", str(listed[0]["id"]), "-o", str(target))
    assert fetched.returncode == 0, fetched.stderr
    assert target.read_bytes() == content
    await client.aclose()
    await cp.close()


async def test_get_log_every_answer_with_an_operator_location(server: RunningServer) -> None:
    cp = await online(server)
    client = await control(server)
    ids = []
    for status, log_type in (
        ("Accepted", "DiagnosticsLog"),
        ("Rejected", "SecurityLog"),
        ("AcceptedCanceled", "SecurityLog"),
    ):
        call, response = await request_answered(
            client,
            cp,
            "logs.get",
            {"status": status},  # no filename: the charger has none to give
            charger_id="CP-1",
            log_type=log_type,
            location="ftp://logs.example.com/incoming/",
        )
        assert call[3]["log"] == {"remoteLocation": "ftp://logs.example.com/incoming/"}
        assert call[3]["logType"] == log_type
        assert response["result"]["status"] == status
        assert response["result"]["details"]["filename"] is None
        ids.append(call[3]["requestId"])
    # Each request has its own id (AcceptedCanceled: this one replaced a running one).
    assert len(set(ids)) == 3
    assert ids == sorted(ids)
    audit = server.run(commands.list_commands, "CP-1")
    assert [a["status"] for a in audit] == ["AcceptedCanceled", "Rejected", "Accepted"]
    assert audit[0]["request"]["remote_location"] == "ftp://logs.example.com/incoming/"
    # Refused before anything is sent.
    for args, words in (
        ({"log_type": "KernelLog"}, "log_type"),
        ({"location": "file:///etc/passwd"}, "location must be"),
        ({"location": "http://x/" + "a" * 600}, "512"),
        (
            {
                "location": "http://x/",
                "oldest": "2030-01-02T00:00:00Z",
                "latest": "2030-01-01T00:00:00Z",
            },
            "before",
        ),
        ({"location": "http://x/", "retries": -1}, "retries"),
    ):
        refused = await client.request("logs.get", {"charger_id": "CP-1", **args})
        assert not refused["ok"], args
        assert refused["error"]["code"] == "bad_arguments", refused
        assert words in refused["error"]["message"]
    # GetLog is numbered by the server: not a bare command.
    bare = await client.command("CP-1", "GetLog", log_type="SecurityLog")
    assert bare["error"]["code"] == "bad_arguments"
    assert "logs get" in bare["error"]["message"]
    await cp.expect_silence()
    await client.aclose()
    await cp.close()


async def test_every_log_status_is_stored_with_its_request(server: RunningServer) -> None:
    cp = await online(server)
    for i, status in enumerate(UploadLogStatus):
        assert (
            await cp.call("LogStatusNotification", {"status": status.value, "requestId": i}) == {}
        )
    # requestId is optional in the schema: stored without one.
    assert await cp.call("LogStatusNotification", {"status": "Idle"}) == {}
    assert history(server, TransferKind.LOG) == [
        *((s.value, i) for i, s in enumerate(UploadLogStatus)),
        ("Idle", None),
    ]
    # A status the schema does not know, or none: a CALLERROR and nothing stored.
    bad = await cp.call("LogStatusNotification", {"status": "Exploded", "requestId": 1})
    assert bad[0] == 4, bad
    missing = await cp.call("LogStatusNotification", {"requestId": 1})
    assert missing[0] == 4, missing
    assert len(history(server, TransferKind.LOG)) == len(UploadLogStatus) + 1
    await cp.close()


async def test_a_log_too_big_a_reused_token_and_a_charger_that_never_uploads(
    http_server: RunningServer,
) -> None:
    server = http_server
    cp = await online(server)
    client = await control(server)
    call, _ = await request_answered(
        client, cp, "logs.get", {"status": "Accepted", "filename": "big.log"}, charger_id="CP-1"
    )
    big_url = call[3]["log"]["remoteLocation"]
    call, _ = await request_answered(
        client,
        cp,
        "logs.get",
        {"status": "Accepted", "filename": "never.log"},
        charger_id="CP-1",
        log_type="DiagnosticsLog",
    )
    never_url = call[3]["log"]["remoteLocation"]
    never_id = call[3]["requestId"]
    async with httpx.AsyncClient(timeout=10) as http:
        too_big = await http.put(big_url, content=b"x" * (UPLOAD_LIMIT + 1))
        assert too_big.status_code == 413
        assert str(UPLOAD_LIMIT) in too_big.json()["error"]["message"]
        # Streamed without a length: refused once it passes the limit.

        async def chunks() -> Any:
            for _ in range(UPLOAD_LIMIT // 1024 + 2):
                yield b"y" * 1024

        streamed = await http.put(big_url, content=chunks())
        assert streamed.status_code == 413
        # The charger reports its failure; nothing was kept.
        failed = {"status": "UploadFailure", "requestId": call[3]["requestId"] - 1}
        assert await cp.call("LogStatusNotification", failed) == {}
        assert (await client.request("logs.list", {}))["result"] == []
        # Within its limit the same URL still works once (a refused upload spends nothing).
        ok = await http.put(big_url, content=b"fits")
        assert ok.status_code == 201
        reused = await http.put(big_url, content=b"fits")
        assert reused.status_code == 410
        # The charger that never uploads: its URL runs out (file_url_ttl) and then is
        # refused; nothing is listed for it and its request stays as the charger answered.
        server.run(_expire, hash_token(urlsplit(never_url).path.split("/")[3]))
        late = await http.put(never_url, content=b"late")
        assert late.status_code == 410
        assert late.json()["error"]["message"] == "this file URL has expired"
    listed = (await client.request("logs.list", {"charger_id": "CP-1"}))["result"]
    assert [(f["kind"], f["size"]) for f in listed] == [("securitylog", 4)]
    assert not any(f["kind"] == "diagnosticslog" for f in listed)
    audit = server.run(commands.list_commands, "CP-1")
    assert audit[0]["action"] == "GetLog"
    assert audit[0]["status"] == "Accepted"
    assert (never_id - 1, None) not in history(server, TransferKind.LOG)
    await client.aclose()
    await cp.close()


def _expire(s: Any, token_hash: str) -> None:
    s.execute(
        update(FileTokenRow)
        .where(FileTokenRow.token_hash == token_hash)
        .values(expires_at=utc_now() - timedelta(seconds=1))
    )


# --- SignedUpdateFirmware and SignedFirmwareStatusNotification ---------------------------


async def test_signed_update_of_a_served_image_signed_by_voltaro(
    http_server: RunningServer, tmp_path: Path
) -> None:
    server = http_server
    cp = await online(server)
    client = await control(server)
    assert (await client.request("subscribe", {"frames": False}))["ok"]
    path, data = image(tmp_path, 300_000)
    await add_firmware(client, path)
    for kind in ("rsa", "ec"):
        signer = make_signer(tmp_path / kind, kind)
        call, response = await request_answered(
            client,
            cp,
            "firmware.update_signed",
            {"status": "Accepted"},
            charger_id="CP-1",
            file="acme-2.1.bin",
            signing_certificate=signer.cert_pem,
            private_key=signer.key_pem,
            retrieve_date="2030-01-01T00:00:00Z",
            install_date="2030-01-01T02:00:00Z",
            retries=1,
            retry_interval=60,
        )
        assert response["ok"], response
        assert call[2] == "SignedUpdateFirmware"
        fw = call[3]["firmware"]
        request_id = call[3]["requestId"]
        assert response["result"] == {
            "action": "SignedUpdateFirmware",
            "status": "Accepted",
            "details": {"request_id": request_id},
        }
        assert set(call[3]) == {"requestId", "firmware", "retries", "retryInterval"}
        assert fw["retrieveDateTime"] == "2030-01-01T00:00:00Z"
        assert fw["installDateTime"] == "2030-01-01T02:00:00Z"
        assert fw["signingCertificate"] == signer.cert_pem
        assert "/files/firmware/" in fw["location"]
        # What the charger does: the signature (computed by Voltaro) checks out against
        # the certificate over the bytes it downloads.
        assert verifies(data, signer.cert_pem, fw["signature"])
    # The downloaded image is the one signed (the URL is valid from retrieveDateTime,
    # which is in the future: use the one-time URL of a second update for now).
    signer = make_signer(tmp_path / "now", "ec")
    call, _ = await request_answered(
        client,
        cp,
        "firmware.update_signed",
        {"status": "Accepted"},
        charger_id="CP-1",
        file="acme-2.1.bin",
        signing_certificate=signer.cert_pem,
        signature=sign(data, signer.key_pem),  # computed by the operator: checked first
    )
    request_id = call[3]["requestId"]
    async with httpx.AsyncClient(timeout=10) as http:
        got = await http.get(call[3]["firmware"]["location"])
        assert got.status_code == 200
        assert verifies(got.content, signer.cert_pem, call[3]["firmware"]["signature"])
    sequence = [
        "DownloadScheduled",
        "Downloading",
        "Downloaded",
        "SignatureVerified",
        "InstallScheduled",
        "Installing",
        "InstallRebooting",
        "Installed",
    ]
    for status in sequence:
        notification = {"status": status, "requestId": request_id}
        assert await cp.call("SignedFirmwareStatusNotification", notification) == {}
    assert history(server, TransferKind.SIGNED_FIRMWARE) == [(s, request_id) for s in sequence]
    live = await events_named(client, "firmware.signed_status", len(sequence))
    assert [e["status"] for e in live] == sequence
    assert {e["request_id"] for e in live} == {request_id}
    shown = (await client.request("chargers.show", {"charger_id": "CP-1"}))["result"]
    assert shown["signed_firmware_status"]["status"] == "Installed"
    # The audit keeps neither the key nor the URL token; it names the image.
    rows = server.run(commands.list_commands, "CP-1")
    text = json.dumps(rows, default=str)
    assert "PRIVATE KEY" not in text
    assert urlsplit(call[3]["firmware"]["location"]).path.split("/")[3] not in text
    assert "acme-2.1.bin" in rows[0]["request"]["location"]
    await client.aclose()
    await cp.close()


async def test_signed_update_every_answer_and_status(server: RunningServer, tmp_path: Path) -> None:
    cp = await online(server)
    client = await control(server)
    signer = make_signer(tmp_path, "ec")
    for status in (
        "Accepted",
        "Rejected",
        "AcceptedCanceled",
        "InvalidCertificate",
        "RevokedCertificate",
    ):
        call, response = await request_answered(
            client,
            cp,
            "firmware.update_signed",
            {"status": status},
            charger_id="CP-1",
            location="https://fw.example.com/acme-2.1.bin",
            signing_certificate=signer.cert_pem,
            signature=sign(b"anything", signer.key_pem),
        )
        assert call[3]["firmware"]["location"] == "https://fw.example.com/acme-2.1.bin"
        assert set(call[3]["firmware"]) == {
            "location",
            "retrieveDateTime",
            "signingCertificate",
            "signature",
        }
        assert response["result"]["status"] == status
    assert [a["status"] for a in server.run(commands.list_commands, "CP-1")] == [
        "RevokedCertificate",
        "InvalidCertificate",
        "AcceptedCanceled",
        "Rejected",
        "Accepted",
    ]
    for i, status in enumerate(SignedFirmwareStatus):
        report = {"status": status.value, "requestId": 100 + i}
        assert await cp.call("SignedFirmwareStatusNotification", report) == {}
    assert history(server, TransferKind.SIGNED_FIRMWARE) == [
        (s.value, 100 + i) for i, s in enumerate(SignedFirmwareStatus)
    ]
    # FirmwareStatusNotification knows none of the extension's statuses.
    bad = await cp.call("FirmwareStatusNotification", {"status": "SignatureVerified"})
    assert bad[0] == 4, bad
    bad = await cp.call("SignedFirmwareStatusNotification", {"status": "Exploded", "requestId": 1})
    assert bad[0] == 4, bad
    assert len(history(server, TransferKind.SIGNED_FIRMWARE)) == len(SignedFirmwareStatus)
    await client.aclose()
    await cp.close()


async def test_bad_signatures(http_server: RunningServer, tmp_path: Path) -> None:
    """A bad signature of an image Voltaro serves is refused before anything is sent; for
    an image elsewhere only the charger can tell, and reports InvalidSignature."""
    server = http_server
    cp = await online(server)
    client = await control(server)
    path, data = image(tmp_path, 10_000)
    await add_firmware(client, path)
    signer = make_signer(tmp_path / "a", "ec")
    other = make_signer(tmp_path / "b", "rsa", name="Someone Else")
    base = {"charger_id": "CP-1", "signing_certificate": signer.cert_pem}
    for args, words in (
        (
            {"file": "acme-2.1.bin", "signature": sign(data + b"!", signer.key_pem)},
            "InvalidSignature",
        ),
        ({"file": "acme-2.1.bin", "signature": sign(data, other.key_pem)}, "InvalidSignature"),
        ({"file": "acme-2.1.bin", "private_key": other.key_pem}, "does not belong"),
        (
            {
                "file": "acme-2.1.bin",
                "private_key": "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
            },
            "not an unencrypted PEM",
        ),
        (
            {"location": "https://fw.example.com/a.bin", "private_key": signer.key_pem},
            "signs only firmware it serves",
        ),
        ({"file": "acme-2.1.bin"}, "either a signature"),
        ({"file": "acme-2.1.bin", "signature": "not base64!"}, "base64"),
        ({"file": "acme-2.1.bin", "signature": "QUJD" * 201}, "800"),
        (
            {"file": "acme-2.1.bin", "signature": "QUJD", "signing_certificate": "nope"},
            "PEM certificate",
        ),
        (
            {
                "location": "https://fw.example.com/a.bin",
                "signature": "QUJD",
                "install_date": "2000-01-01T00:00:00Z",
            },
            "install date",
        ),
    ):
        refused = await client.request("firmware.update_signed", {**base, **args})
        assert not refused["ok"], args
        assert refused["error"]["code"] == "bad_arguments", refused
        assert words in refused["error"]["message"], refused
        assert "PRIVATE KEY" not in json.dumps(refused)
    await cp.expect_silence()
    assert server.run(commands.list_commands, "CP-1") == []
    # An image elsewhere with a bad signature: sent; the charger says InvalidSignature.
    call, response = await request_answered(
        client,
        cp,
        "firmware.update_signed",
        {"status": "Accepted"},
        **base,
        location="https://fw.example.com/a.bin",
        signature=sign(b"another image", signer.key_pem),
    )
    assert response["result"]["status"] == "Accepted"
    request_id = call[3]["requestId"]
    for status in ("Downloading", "Downloaded", "InvalidSignature"):
        report = {"status": status, "requestId": request_id}
        assert await cp.call("SignedFirmwareStatusNotification", report) == {}
    shown = (await client.request("chargers.show", {"charger_id": "CP-1"}))["result"]
    assert shown["signed_firmware_status"]["status"] == "InvalidSignature"
    assert shown["signed_firmware_status"]["request_id"] == request_id
    await client.aclose()
    await cp.close()


async def test_ctl_update_signed_with_a_key_file(
    http_server: RunningServer, tmp_path: Path
) -> None:
    server = http_server
    cp = await online(server)
    path, data = image(tmp_path, 5000)
    added = await ctl(server, "firmware", "add", str(path))
    assert added.returncode == 0, added.stderr
    signer = make_signer(tmp_path / "keys", "rsa")
    results: list[Any] = []
    async with trio.open_nursery() as nursery:

        async def run() -> None:
            results.append(
                await ctl(
                    server,
                    "--json",
                    "firmware",
                    "update-signed",
                    "CP-1",
                    "--file",
                    "acme-2.1.bin",
                    "--signing-cert",
                    str(signer.cert),
                    "--sign-with",
                    str(signer.key),
                )
            )

        nursery.start_soon(run)
        call = await cp.next_call()
        await cp.answer(call, {"status": "Accepted"})
    done = results[0]
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert answer["details"]["request_id"] == call[3]["requestId"]
    assert verifies(data, signer.cert_pem, call[3]["firmware"]["signature"])
    missing = await ctl(
        server,
        "firmware",
        "update-signed",
        "CP-1",
        "--file",
        "acme-2.1.bin",
        "--signing-cert",
        str(tmp_path / "absent.pem"),
        "--signature",
        "QUJD",
    )
    assert missing.returncode == 2
    assert b"cannot read the signing certificate" in missing.stderr
    await cp.close()


# --- The HTTP API ---------------------------------------------------------------------


async def test_http_api_routes(api: tuple[RunningServer, str], tmp_path: Path) -> None:
    server, base = api
    cp = await online(server)
    signer = make_signer(tmp_path, "ec")

    async def answered(
        method: str, path: str, token: str, body: dict[str, Any], answer: dict[str, Any]
    ) -> tuple[Any, httpx.Response]:
        out: list[httpx.Response] = []
        async with trio.open_nursery() as nursery:

            async def send() -> None:
                async with api_client(base, token) as http:
                    out.append(await http.request(method, path, json=body))

            nursery.start_soon(send)
            call = await cp.next_call()
            await cp.answer(call, answer)
        return call, out[0]

    call, got = await answered(
        "POST",
        "/charge_points/CP-1/commands/trigger-ext",
        OPERATE,
        {"requested_message": "SignChargePointCertificate"},
        {"status": "Accepted"},
    )
    assert got.status_code == 200, got.text
    assert call[2] == "ExtendedTriggerMessage"
    assert got.json() == {"action": "ExtendedTriggerMessage", "status": "Accepted"}
    call, got = await answered(
        "POST",
        "/charge_points/CP-1/logs",
        OPERATE,
        {"log_type": "DiagnosticsLog", "location": "https://logs.example.com/up/"},
        {"status": "Rejected"},
    )
    assert got.status_code == 200, got.text
    assert got.json()["status"] == "Rejected"
    assert got.json()["details"]["request_id"] == call[3]["requestId"]
    body = {
        "location": "https://fw.example.com/a.bin",
        "signing_certificate": signer.cert_pem,
        "signature": sign(b"a", signer.key_pem),
    }
    async with api_client(base, OPERATE) as http:
        refused = await http.post("/charge_points/CP-1/firmware/signed_update", json=body)
        assert refused.status_code == 403
        listed = await http.get("/logs", params={"charge_point_id": "CP-1"})
        assert listed.status_code == 200
        assert listed.json() == []
        state = await http.get("/charge_points/CP-1/firmware")
        assert state.status_code == 200
        assert state.json()["log_status"] is None
    async with api_client(base, READ) as http:
        assert (await http.post("/charge_points/CP-1/logs", json={})).status_code == 403
    call, got = await answered(
        "POST",
        "/charge_points/CP-1/firmware/signed_update",
        ADMIN,
        body,
        {"status": "InvalidCertificate"},
    )
    assert got.status_code == 200, got.text
    assert got.json()["status"] == "InvalidCertificate"
    assert call[3]["firmware"]["signature"] == body["signature"]
    report = {"status": "Idle", "requestId": call[3]["requestId"]}
    assert await cp.call("SignedFirmwareStatusNotification", report) == {}
    async with api_client(base, READ) as http:
        state = (await http.get("/charge_points/CP-1/firmware")).json()
        assert state["signed_firmware_status"]["status"] == "Idle"
        assert state["transfer_history"][0] == {
            "kind": "signed_firmware",
            "status": "Idle",
            "at": state["signed_firmware_status"]["at"],
            "request_id": call[3]["requestId"],
        }
    await cp.close()


# --- An independent charger: the `ocpp` library's ChargePoint --------------------------


async def test_the_ocpp_library_charger_takes_all_three(
    server: RunningServer, tmp_path: Path
) -> None:
    """The library checks each CALL against its 1.6 security schemas before its handler
    runs: what Voltaro sends is what a library-based charger accepts, both ways."""
    import asyncio

    from ocpp.routing import on
    from ocpp.v16 import ChargePoint, call, call_result
    from ocpp.v16.enums import Action

    signer = make_signer(tmp_path, "ec")
    received: list[tuple[str, dict[str, Any]]] = []

    class Charger(ChargePoint):  # type: ignore[misc]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.all_received = asyncio.Event()

        def note(self, name: str, kw: dict[str, Any]) -> None:
            received.append((name, kw))
            if len(received) == 3:
                self.all_received.set()

        @on(Action.extended_trigger_message)
        async def on_trigger(self, **kw: Any) -> Any:
            self.note("ExtendedTriggerMessage", kw)
            return call_result.ExtendedTriggerMessage(status="Accepted")

        @on(Action.get_log)
        async def on_get_log(self, **kw: Any) -> Any:
            self.note("GetLog", kw)
            return call_result.GetLog(status="Accepted", filename="sec.log")

        @on(Action.signed_update_firmware)
        async def on_signed(self, **kw: Any) -> Any:
            self.note("SignedUpdateFirmware", kw)
            return call_result.SignedUpdateFirmware(status="Accepted")

    server.run(chargers.add_charger, "CP-L")
    client = await control(server)
    answers: list[dict[str, Any]] = []

    async def report(cp: Any, ws: Any) -> dict[str, Any]:
        await asyncio.wait_for(cp.all_received.wait(), 20)
        log_id, firmware_id = (kw.get("request_id") for _, kw in received[1:])
        await cp.call(call.LogStatusNotification(status="Uploaded", request_id=log_id))
        await cp.call(
            call.SignedFirmwareStatusNotification(status="Installed", request_id=firmware_id)
        )
        return {}

    async with trio.open_nursery() as nursery:

        async def charger() -> None:
            outcome = await trio.to_thread.run_sync(
                functools.partial(
                    ocpp_charger.boot, server.url, "CP-L", then=report, charge_point=Charger
                )
            )
            assert outcome.error is None, outcome

        nursery.start_soon(charger)
        with trio.fail_after(10):
            while server.run(chargers.get_charger, "CP-L").last_boot is None:  # noqa: ASYNC110
                await trio.sleep(0.05)  # the charger runs in another thread
        answers.append(
            await client.command("CP-L", "trigger-ext", requested_message="LogStatusNotification")
        )
        answers.append(
            await client.request(
                "logs.get", {"charger_id": "CP-L", "location": "https://logs.example.com/up/"}
            )
        )
        answers.append(
            await client.request(
                "firmware.update_signed",
                {
                    "charger_id": "CP-L",
                    "location": "https://fw.example.com/a.bin",
                    "signing_certificate": signer.cert_pem,
                    "signature": sign(b"a", signer.key_pem),
                },
            )
        )
    assert [a["result"]["status"] for a in answers] == ["Accepted"] * 3, answers
    assert [name for name, _ in received] == [
        "ExtendedTriggerMessage",
        "GetLog",
        "SignedUpdateFirmware",
    ]
    # (The library hands its handlers snake_case keys, nested ones too.)
    assert received[1][1]["log"] == {"remote_location": "https://logs.example.com/up/"}
    assert received[2][1]["firmware"]["signing_certificate"] == signer.cert_pem
    rows = server.run(firmware.transfer_history, "CP-L", limit=10)
    assert {(r.kind, r.status, r.request_id) for r in rows} == {
        (TransferKind.LOG, "Uploaded", received[1][1]["request_id"]),
        (TransferKind.SIGNED_FIRMWARE, "Installed", received[2][1]["request_id"]),
    }
    assert answers[1]["result"]["details"]["filename"] == "sec.log"
    await client.aclose()
