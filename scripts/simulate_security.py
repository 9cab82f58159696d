"""The 1.6 security extension's transfers in the simulator (scripts/simulate.py):
ExtendedTriggerMessage, GetLog with LogStatusNotification, SignedUpdateFirmware with
SignedFirmwareStatusNotification. Kept apart from simulate.py (the certificate messages
live in their own part too); SimCharger takes SecurityTransferHandlers as a mixin.

- ExtendedTriggerMessage: sends the requested message; SignChargePointCertificate starts
  the charger's certificate renewal when the simulator has one (``sim.renew_certificate``),
  else NotImplemented.
- GetLog: answers Accepted with a file name, uploads a generated log (security events or
  diagnostics lines; ``--log-bytes`` pads it) to the remote location (HTTP PUT of location
  plus file name, or FTP STOR) and reports Uploading then Uploaded, UploadFailure (the
  upload failed, e.g. refused as too large) or PermissionDenied (HTTP 401/403).
  ``--log-fail`` forces a failure: ``upload`` (UploadFailure), ``permission``
  (PermissionDenied), ``reject`` (GetLog Rejected), ``unsupported`` (NotSupportedOperation).
- SignedUpdateFirmware: answers InvalidCertificate for a certificate it cannot read, else
  Accepted; at retrieveDateTime it downloads (DownloadScheduled first if that is later,
  Downloading, Downloaded or DownloadFailed), checks the signature over the image with the
  certificate's key (SHA-256 with RSA PKCS#1 v1.5 or ECDSA) and reports SignatureVerified or
  InvalidSignature (and stops), then InstallScheduled (if installDateTime is later),
  Installing, InstallRebooting, reboots with the new version and reports Installed.
  ``--firmware-fail download|install`` applies here too.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import urllib.error
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from ocpp.routing import on
from ocpp.v16 import call, call_result
from ocpp.v16.enums import Action


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--log-fail",
        choices=("none", "upload", "permission", "reject", "unsupported"),
        default="none",
        help="GetLog: report UploadFailure or PermissionDenied, answer Rejected, or report "
        "NotSupportedOperation",
    )
    p.add_argument(
        "--log-bytes", type=int, default=0, metavar="N", help="GetLog: pad the log to N bytes"
    )


class TransferState:
    """What the charger last reported about GetLog and SignedUpdateFirmware."""

    def __init__(self) -> None:
        self.log_status = "Idle"
        self.log_request: int | None = None
        self.firmware_status = "Idle"
        self.firmware_request: int | None = None


def _state(sim: Any) -> TransferState:
    state = getattr(sim, "security_transfers", None)
    if state is None:
        state = sim.security_transfers = TransferState()
    return state


async def _log_status(sim: Any, status: str, request_id: int | None) -> None:
    state = _state(sim)
    state.log_status, state.log_request = status, request_id
    await sim.send(call.LogStatusNotification(status=status, request_id=request_id))


async def _firmware_status(sim: Any, status: str, request_id: int | None) -> None:
    state = _state(sim)
    state.firmware_status, state.firmware_request = status, request_id
    await sim.send(call.SignedFirmwareStatusNotification(status=status, request_id=request_id))


async def _until(moment: str | None) -> bool:
    """Sleep until an ISO 8601 time; True if there was a wait (the step was scheduled)."""
    if not moment:
        return False
    try:
        at = datetime.fromisoformat(moment.replace("Z", "+00:00"))
    except ValueError:
        return False
    delay = (at - datetime.now(UTC)).total_seconds()
    if delay <= 0:
        return False
    await asyncio.sleep(delay)
    return True


def _log_lines(sim: Any, log_type: str) -> bytes:
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    if log_type == "SecurityLog":
        lines = [
            f"{stamp} {sim.charger_id} StartupOfTheDevice firmware {sim.firmware_version}",
            f"{stamp} {sim.charger_id} SettingSystemTime",
        ]
    else:
        lines = [f"{stamp} {sim.charger_id} firmware {sim.firmware_version}"]
        lines += [f"connector {c}: {s}" for c, s in sorted(sim.statuses.items())]
    data = ("\n".join(lines) + "\n").encode()
    pad = sim.args.log_bytes - len(data)
    return data + (b"#" * pad if pad > 0 else b"")


async def upload_log(
    sim: Any, upload: Any, location: str, name: str, log_type: str, request_id: int
) -> None:
    """GetLog: upload the log and report each step (LogStatusNotification)."""
    fail = sim.args.log_fail
    if fail == "unsupported":
        await _log_status(sim, "NotSupportedOperation", request_id)
        return
    await _log_status(sim, "Uploading", request_id)
    try:
        if fail == "upload":
            raise OSError("upload failure requested (--log-fail upload)")
        if fail == "permission":
            raise PermissionError("permission denied requested (--log-fail permission)")
        await asyncio.to_thread(upload, location, name, _log_lines(sim, log_type), 60)
    except urllib.error.HTTPError as exc:
        status = "PermissionDenied" if exc.code in (401, 403) else "UploadFailure"
        await _log_status(sim, status, request_id)
        return
    except PermissionError:
        await _log_status(sim, "PermissionDenied", request_id)
        return
    except Exception:  # any failure to upload is the charger's UploadFailure
        await _log_status(sim, "UploadFailure", request_id)
        return
    await _log_status(sim, "Uploaded", request_id)


def signature_ok(image: bytes, certificate_pem: str, signature: str) -> bool:
    """The charger's check: the signature over the image, with the certificate's key."""
    try:
        public = x509.load_pem_x509_certificate(certificate_pem.encode()).public_key()
        raw = base64.b64decode(signature, validate=True)
        if isinstance(public, rsa.RSAPublicKey):
            public.verify(raw, image, padding.PKCS1v15(), hashes.SHA256())
        elif isinstance(public, ec.EllipticCurvePublicKey):
            public.verify(raw, image, ec.ECDSA(hashes.SHA256()))
        else:
            return False
    except (InvalidSignature, ValueError, binascii.Error):
        return False
    return True


def _later(moment: str | None) -> bool:
    if not moment:
        return False
    try:
        return datetime.fromisoformat(moment.replace("Z", "+00:00")) > datetime.now(UTC)
    except ValueError:
        return False


async def signed_update(
    sim: Any,
    download: Any,
    request_id: int,
    firmware: dict[str, Any],
    retries: int,
    retry_interval: int | None,
) -> None:
    """SignedUpdateFirmware: download, check the signature, install, reboot."""
    location = firmware["location"]
    install = firmware.get("install_date_time")

    async def report(status: str) -> None:
        await _firmware_status(sim, status, request_id)

    if _later(firmware.get("retrieve_date_time")):
        await report("DownloadScheduled")
        await _until(firmware.get("retrieve_date_time"))
    await report("Downloading")
    image = None
    for attempt in range(retries + 1):
        if sim.args.firmware_fail == "download":
            break
        try:
            image = await asyncio.to_thread(download, location, 60)
            break
        except OSError:
            if attempt < retries:
                await asyncio.sleep(retry_interval or 1)
    if image is None:
        await report("DownloadFailed")
        return
    sim.stats.firmware_bytes += len(image)
    await report("Downloaded")
    if not signature_ok(image, firmware["signing_certificate"], firmware["signature"]):
        await report("InvalidSignature")
        return
    await report("SignatureVerified")
    if _later(install):
        await report("InstallScheduled")
        await _until(install)
    await report("Installing")
    await asyncio.sleep(sim.args.install_seconds)
    if sim.args.firmware_fail == "install":
        await report("InstallationFailed")
        return
    name = urlsplit(location).path.rsplit("/", 1)[-1]
    sim.firmware_version = (name.rsplit(".", 1)[0].split("-")[-1] or "signed")[:50]
    await report("InstallRebooting")
    await sim.reboot("Reboot")
    # Installed once it is back: the report waits for the new connection.
    for _ in range(100):
        if not sim.online.is_set():
            break
        await asyncio.sleep(0.05)
    state = _state(sim)
    state.firmware_status, state.firmware_request = "Installed", request_id
    await sim.send(
        call.SignedFirmwareStatusNotification(status="Installed", request_id=request_id),
        transactional=True,
    )


class SecurityTransferHandlers:
    """@on handlers for the ChargePoint subclass; expects ``self.sim`` (VirtualCharger)
    and the transfer helpers passed by simulate.py (``_download``/``_upload``)."""

    sim: Any
    download: Any
    upload: Any

    @on(Action.extended_trigger_message)
    async def on_extended_trigger(
        self, requested_message: str, connector_id: int | None = None, **_: Any
    ) -> Any:
        sim = self.sim
        state = _state(sim)
        triggers = {
            "StatusNotification": lambda: sim.report_status(connector_id),
            "Heartbeat": sim.heartbeat,
            "BootNotification": sim.boot,
            "MeterValues": lambda: sim.meter_now(connector_id),
            "LogStatusNotification": lambda: _log_status(sim, state.log_status, state.log_request),
            # The extension's FirmwareStatusNotification is the signed one.
            "FirmwareStatusNotification": lambda: _firmware_status(
                sim, state.firmware_status, state.firmware_request
            ),
        }
        renew = getattr(sim, "renew_certificate", None)
        if renew is not None:
            triggers["SignChargePointCertificate"] = renew
        action = triggers.get(requested_message)
        if action is None:
            return call_result.ExtendedTriggerMessage(status="NotImplemented")
        sim.spawn(action())
        return call_result.ExtendedTriggerMessage(status="Accepted")

    @on(Action.get_log)
    async def on_get_log(
        self, log: dict[str, Any], log_type: str, request_id: int, **_: Any
    ) -> Any:
        sim = self.sim
        if sim.args.log_fail == "reject":
            return call_result.GetLog(status="Rejected")
        kind = "security" if log_type == "SecurityLog" else "diagnostics"
        name = f"{kind}-{sim.charger_id}-{request_id}.log"
        sim.spawn(upload_log(sim, self.upload, log["remote_location"], name, log_type, request_id))
        return call_result.GetLog(status="Accepted", filename=name)

    @on(Action.signed_update_firmware)
    async def on_signed_update_firmware(
        self, request_id: int, firmware: dict[str, Any], retries: int | None = None, **kw: Any
    ) -> Any:
        sim = self.sim
        try:
            x509.load_pem_x509_certificate(firmware["signing_certificate"].encode())
        except ValueError:
            return call_result.SignedUpdateFirmware(status="InvalidCertificate")
        sim.spawn(
            signed_update(
                sim, self.download, request_id, firmware, retries or 0, kw.get("retry_interval")
            )
        )
        return call_result.SignedUpdateFirmware(status="Accepted")
