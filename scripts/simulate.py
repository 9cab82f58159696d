#!/usr/bin/env python3
"""Simulate OCPP 1.6J chargers against a Central System.

    python scripts/simulate.py ws://127.0.0.1:9000/ocpp --chargers 5 --connectors 2

Each virtual charger boots (retrying while Pending), reports connector 0 and every
connector, heartbeats, and runs full charging sessions (Authorize, Preparing,
StartTransaction, MeterValues with energy/power/current/voltage per phase,
StopTransaction with transactionData, Finishing, Available). It answers every Core
command like a real charger, reconnects with back-off, and queues transaction messages
while offline to send them in order afterwards.

Losing the connection on purpose (issue 17): ``--offline SIM-3@60+120`` drops SIM-3's
link 60 s after the start and keeps it offline for 120 s (repeatable); with
``--commands-stdin`` a line ``offline SIM-3 120`` on standard input does it at once
(``VirtualCharger.go_offline(seconds)`` in Python). Meanwhile its cars keep charging by
the charging profiles it holds, by its own clock (a leased ChargePointMaxProfile brings
them down to the fallback when the lease runs out, scripts/charging_schedule.py), and
their MeterValues are sampled as usual, queued, and sent in order after the reconnect.

Firmware Management: UpdateFirmware downloads the image from the URL it is given (HTTP,
HTTPS or FTP) at its retrieve date, reporting Downloading, Downloaded, Installing,
Installed (then it reboots with the new version) in FirmwareStatusNotification;
``--firmware-fail download`` or ``install`` reports DownloadFailed or InstallationFailed
instead. GetDiagnostics uploads a generated diagnostics file (HTTP PUT to the location
plus the file name, or FTP STOR) reporting Uploading and Uploaded or UploadFailed.

Security extension (scripts/sim_certificates.py): InstallCertificate,
GetInstalledCertificateIds and DeleteCertificate are answered from an in-memory store;
``--sign-certificate`` makes each charger send SignCertificate after booting (a new EC
P-256 key, CN = its id, O = ``--cert-org``), install the chain CertificateSigned brings
and reconnect with it (``wss://``, profile 3).

The 1.6 security extension's ExtendedTriggerMessage, GetLog and SignedUpdateFirmware are
answered by scripts/simulate_security.py (its docstring says how; ``--log-fail``,
``--log-bytes``).

Built on the `ocpp` library's own asyncio ChargePoint over `websockets`: independent of
the server's code, so it also serves as a second implementation in tests.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import ftplib
import hashlib
import io
import logging
import random
import ssl
import string
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote, urlsplit

import websockets
from charging_schedule import Installed, Limit, composite, limit_at
from ocpp.routing import on
from ocpp.v16 import ChargePoint as LibraryChargePoint
from ocpp.v16 import call, call_result
from ocpp.v16.enums import Action
from sim_certificates import CertificateHandlers, ChargerCertificates, request_certificate
from simulate_security import SecurityTransferHandlers
from simulate_security import add_arguments as add_security_arguments

log = logging.getLogger("simulate")

CORE_KEYS: dict[str, tuple[str, bool]] = {
    "AuthorizeRemoteTxRequests": ("true", False),
    "ClockAlignedDataInterval": ("0", False),
    "ConnectionTimeOut": ("60", False),
    "ConnectorPhaseRotation": ("0.RST", False),
    "GetConfigurationMaxKeys": ("50", True),
    "HeartbeatInterval": ("300", False),
    "LocalAuthorizeOffline": ("true", False),
    "LocalPreAuthorize": ("false", False),
    "MeterValuesAlignedData": ("Energy.Active.Import.Register", False),
    "MeterValuesSampledData": ("Energy.Active.Import.Register,Power.Active.Import", False),
    "MeterValueSampleInterval": ("60", False),
    "NumberOfConnectors": ("1", True),
    "ResetRetries": ("1", False),
    "StopTransactionOnEVSideDisconnect": ("true", False),
    "StopTransactionOnInvalidId": ("true", False),
    "StopTxnAlignedData": ("", False),
    "StopTxnSampledData": ("Energy.Active.Import.Register", False),
    "SupportedFeatureProfiles": (
        "Core,FirmwareManagement,RemoteTrigger,LocalAuthListManagement,Reservation,SmartCharging",
        True,
    ),
    "SupportedFileTransferProtocols": ("HTTP,HTTPS,FTP", True),
    # Local Authorization List Management and Reservation (OCPP 1.6 §9.3, §9.4).
    "LocalAuthListEnabled": ("true", False),
    "LocalAuthListMaxLength": ("100", True),
    "SendLocalListMaxLength": ("20", True),
    "ReserveConnectorZeroSupported": ("true", True),
    # Smart Charging (OCPP 1.6 §9.4).
    "ChargeProfileMaxStackLevel": ("8", True),
    "ChargingScheduleAllowedChargingRateUnit": ("Current,Power", True),
    "ChargingScheduleMaxPeriods": ("24", True),
    "MaxChargingProfilesInstalled": ("10", True),
    "TransactionMessageAttempts": ("3", False),
    "TransactionMessageRetryInterval": ("10", False),
    "UnlockConnectorOnEVSideDisconnect": ("true", False),
}
MAX_POWER_W = 7500.0  # what the simulated charger draws at most without a limit
INTEGER_KEYS = {
    "ClockAlignedDataInterval",
    "ConnectionTimeOut",
    "HeartbeatInterval",
    "MeterValueSampleInterval",
    "LocalAuthListMaxLength",
    "SendLocalListMaxLength",
    "ResetRetries",
    "TransactionMessageAttempts",
    "TransactionMessageRetryInterval",
}


# Tags in a session anywhere in this simulator: a tag charges on one connector at a time
# (a Central System answers ConcurrentTx otherwise).
TAGS_IN_USE: set[str] = set()


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


@dataclass
class Stats:
    connected: int = 0
    sessions_started: int = 0
    sessions_stopped: int = 0
    messages: int = 0
    errors: int = 0
    commands: int = 0
    firmware_bytes: int = 0


@dataclass
class Reservation:
    reservation_id: int
    connector: int  # 0: any connector
    id_tag: str
    parent_id_tag: str | None
    expiry: float  # time.monotonic() deadline


@dataclass
class Session:
    connector: int
    id_tag: str
    transaction_id: int | None
    meter_wh: float
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    started: float = field(default_factory=time.monotonic)
    # Whole seconds, like the StartTransaction timestamp: Relative profiles start here.
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC).replace(microsecond=0))
    reason: str = "Local"


class SimCharger(CertificateHandlers, SecurityTransferHandlers, LibraryChargePoint):  # type: ignore[misc]
    """Answers Core commands like a real charger would (and the security extension:
    certificates in scripts/sim_certificates.py, ExtendedTriggerMessage, GetLog and
    SignedUpdateFirmware in scripts/simulate_security.py)."""

    def __init__(self, sim: VirtualCharger, connection: Any) -> None:
        super().__init__(sim.charger_id, connection, response_timeout=30)
        self.sim = sim
        # The security extension's transfers use the same HTTP/FTP helpers.
        self.download, self.upload = _download, _upload

    @on(Action.remote_start_transaction)
    async def on_remote_start(self, id_tag: str, connector_id: int | None = None, **_: Any) -> Any:
        connector = connector_id or self.sim.free_connector(id_tag)
        ok = (
            connector is not None
            and self.sim.is_free(connector)
            and self.sim.may_start(connector, id_tag)
        )
        if ok:
            TAGS_IN_USE.add(id_tag)
            self.sim.spawn(self.sim.run_session(connector, id_tag))  # type: ignore[arg-type]
        return call_result.RemoteStartTransaction(status="Accepted" if ok else "Rejected")

    @on(Action.remote_stop_transaction)
    async def on_remote_stop(self, transaction_id: int, **_: Any) -> Any:
        ok = self.sim.stop_transaction(transaction_id, "Remote")
        return call_result.RemoteStopTransaction(status="Accepted" if ok else "Rejected")

    @on(Action.reset)
    async def on_reset(self, type: str, **_: Any) -> Any:  # noqa: A002 - OCPP field name
        self.sim.spawn(self.sim.reboot("HardReset" if type == "Hard" else "SoftReset"))
        return call_result.Reset(status="Accepted")

    @on(Action.unlock_connector)
    async def on_unlock(self, connector_id: int, **_: Any) -> Any:
        if not 1 <= connector_id <= self.sim.connectors:
            return call_result.UnlockConnector(status="NotSupported")
        session = self.sim.sessions.get(connector_id)
        if session is not None:
            session.reason = "UnlockCommand"
            session.stop.set()
        return call_result.UnlockConnector(status="Unlocked")

    @on(Action.change_availability)
    async def on_change_availability(self, connector_id: int, type: str, **_: Any) -> Any:  # noqa: A002
        targets = range(1, self.sim.connectors + 1) if connector_id == 0 else [connector_id]
        if connector_id > self.sim.connectors:
            return call_result.ChangeAvailability(status="Rejected")
        if any(t in self.sim.sessions for t in targets):
            return call_result.ChangeAvailability(status="Scheduled")
        status = "Available" if type == "Operative" else "Unavailable"
        for target in targets:
            self.sim.spawn(self.sim.status(target, status))
        return call_result.ChangeAvailability(status="Accepted")

    @on(Action.get_configuration)
    async def on_get_configuration(self, key: list[str] | None = None, **_: Any) -> Any:
        wanted = key or list(self.sim.config)
        known = [
            {"key": k, "readonly": self.sim.config[k][1], "value": self.sim.config[k][0]}
            for k in wanted
            if k in self.sim.config
        ]
        unknown = [k for k in wanted if k not in self.sim.config]
        return call_result.GetConfiguration(configuration_key=known, unknown_key=unknown or None)

    @on(Action.change_configuration)
    async def on_change_configuration(self, key: str, value: str, **_: Any) -> Any:
        if key == "AuthorizationKey":
            # Write-only (whitepaper): used from the next connection on, never reported.
            self.sim.password = password_bytes(value)
            return call_result.ChangeConfiguration(status="Accepted")
        if key not in self.sim.config:
            return call_result.ChangeConfiguration(status="NotSupported")
        _, readonly = self.sim.config[key]
        if readonly or (key in INTEGER_KEYS and not value.isdigit()):
            return call_result.ChangeConfiguration(status="Rejected")
        self.sim.config[key] = (value, readonly)
        return call_result.ChangeConfiguration(status="Accepted")

    @on(Action.clear_cache)
    async def on_clear_cache(self, **_: Any) -> Any:
        return call_result.ClearCache(status="Accepted")

    @on(Action.data_transfer)
    async def on_data_transfer(self, vendor_id: str, **_: Any) -> Any:
        return call_result.DataTransfer(status="UnknownVendorId")

    @on(Action.get_local_list_version)
    async def on_get_local_list_version(self, **_: Any) -> Any:
        return call_result.GetLocalListVersion(list_version=self.sim.list_version)

    @on(Action.send_local_list)
    async def on_send_local_list(
        self,
        list_version: int,
        update_type: str,
        local_authorization_list: list[dict[str, Any]] | None = None,
        **_: Any,
    ) -> Any:
        """OCPP 1.6 §5.15: Full replaces the list; Differential adds, updates and (an entry
        without idTagInfo) removes, and needs a version above the one held."""
        entries = local_authorization_list or []
        if self.sim.config["LocalAuthListEnabled"][0].lower() != "true":
            return call_result.SendLocalList(status="NotSupported")
        if len(entries) > int(self.sim.config["SendLocalListMaxLength"][0]):
            return call_result.SendLocalList(status="Failed")
        if update_type == "Differential" and list_version <= self.sim.list_version:
            return call_result.SendLocalList(status="VersionMismatch")
        new = {} if update_type == "Full" else dict(self.sim.local_list)
        for entry in entries:
            key = entry["id_tag"].upper()
            info = entry.get("id_tag_info")
            if info is None:
                new.pop(key, None)
            else:
                new[key] = info
        if len(new) > int(self.sim.config["LocalAuthListMaxLength"][0]):
            return call_result.SendLocalList(status="Failed")
        self.sim.local_list, self.sim.list_version = new, list_version
        return call_result.SendLocalList(status="Accepted")

    @on(Action.reserve_now)
    async def on_reserve_now(
        self,
        connector_id: int,
        expiry_date: str,
        id_tag: str,
        reservation_id: int,
        parent_id_tag: str | None = None,
        **_: Any,
    ) -> Any:
        """OCPP 1.6 §5.13: Occupied while charging or reserved for another reservation;
        Rejected for an unknown connector; the same reservation id replaces its own."""
        if not 0 <= connector_id <= self.sim.connectors:
            return call_result.ReserveNow(status="Rejected")
        if self.sim.statuses.get(connector_id) in ("Unavailable", "Faulted"):
            return call_result.ReserveNow(status=self.sim.statuses[connector_id])
        if connector_id in self.sim.sessions:
            return call_result.ReserveNow(status="Occupied")
        held = self.sim.reservations.get(connector_id)
        if held is not None and held.reservation_id != reservation_id:
            return call_result.ReserveNow(status="Occupied")
        expiry = datetime.fromisoformat(expiry_date.replace("Z", "+00:00"))
        seconds = (expiry - datetime.now(UTC)).total_seconds()
        self.sim.reservations[connector_id] = Reservation(
            reservation_id, connector_id, id_tag, parent_id_tag, time.monotonic() + seconds
        )
        if connector_id > 0:
            self.sim.spawn(self.sim.status(connector_id, "Reserved"))
        self.sim.spawn(self.sim.expire_reservation(reservation_id, seconds))
        return call_result.ReserveNow(status="Accepted")

    @on(Action.cancel_reservation)
    async def on_cancel_reservation(self, reservation_id: int, **_: Any) -> Any:
        if self.sim.end_reservation(reservation_id) is None:
            return call_result.CancelReservation(status="Rejected")
        return call_result.CancelReservation(status="Accepted")

    @on(Action.set_charging_profile)
    async def on_set_charging_profile(
        self, connector_id: int, cs_charging_profiles: dict[str, Any], **_: Any
    ) -> Any:
        """§5.16: a profile replaces the one with the same id; a TxProfile needs a session."""
        profile = cs_charging_profiles
        if not 0 <= connector_id <= self.sim.connectors:
            return call_result.SetChargingProfile(status="Rejected")
        if profile["charging_profile_purpose"] == "TxProfile" and connector_id not in (
            self.sim.sessions
        ):
            return call_result.SetChargingProfile(status="Rejected")
        self.sim.install_profile(connector_id, profile)
        return call_result.SetChargingProfile(status="Accepted")

    @on(Action.clear_charging_profile)
    async def on_clear_charging_profile(
        self,
        id: int | None = None,  # noqa: A002 - OCPP field name
        connector_id: int | None = None,
        charging_profile_purpose: str | None = None,
        stack_level: int | None = None,
        **_: Any,
    ) -> Any:
        def matches(entry: Installed) -> bool:
            cid, p = entry.connector_id, entry.profile
            if id is not None:
                return bool(p["charging_profile_id"] == id)
            return (
                (connector_id is None or cid == connector_id)
                and (
                    charging_profile_purpose is None
                    or p["charging_profile_purpose"] == charging_profile_purpose
                )
                and (stack_level is None or p["stack_level"] == stack_level)
            )

        kept = [e for e in self.sim.profiles if not matches(e)]
        found = len(kept) != len(self.sim.profiles)
        self.sim.profiles = kept
        return call_result.ClearChargingProfile(status="Accepted" if found else "Unknown")

    @on(Action.get_composite_schedule)
    async def on_get_composite_schedule(
        self, connector_id: int, duration: int, charging_rate_unit: str | None = None, **_: Any
    ) -> Any:
        """§5.7: the composite of every profile in force (scripts/charging_schedule.py)."""
        if not 0 <= connector_id <= self.sim.connectors:
            return call_result.GetCompositeSchedule(status="Rejected")
        return self.sim.composite_schedule(connector_id, duration, charging_rate_unit or "W")

    @on(Action.trigger_message)
    async def on_trigger(
        self, requested_message: str, connector_id: int | None = None, **_: Any
    ) -> Any:
        triggers = {
            "StatusNotification": lambda: self.sim.report_status(connector_id),
            "Heartbeat": self.sim.heartbeat,
            "BootNotification": self.sim.boot,
            "MeterValues": lambda: self.sim.meter_now(connector_id),
            "FirmwareStatusNotification": lambda: self.sim.firmware_status(self.sim.firmware_state),
            "DiagnosticsStatusNotification": lambda: self.sim.diagnostics_status(
                self.sim.diagnostics_state
            ),
        }
        action = triggers.get(requested_message)
        if action is None:
            return call_result.TriggerMessage(status="NotImplemented")
        self.sim.spawn(action())
        return call_result.TriggerMessage(status="Accepted")

    @on(Action.update_firmware)
    async def on_update_firmware(
        self, location: str, retrieve_date: str, retries: int | None = None, **kw: Any
    ) -> Any:
        self.sim.spawn(
            self.sim.update_firmware(
                location, retrieve_date, retries or 0, kw.get("retry_interval")
            )
        )
        return call_result.UpdateFirmware()

    @on(Action.get_diagnostics)
    async def on_get_diagnostics(self, location: str, **_: Any) -> Any:
        name = f"diagnostics-{self.sim.charger_id}-{int(time.time())}.log"
        self.sim.spawn(self.sim.upload_diagnostics(location, name))
        return call_result.GetDiagnostics(file_name=name)


def _download(url: str, timeout: float) -> bytes:
    """HTTP, HTTPS or FTP, as urllib does them (blocking: run in a thread)."""
    with urllib.request.urlopen(url, timeout=timeout) as response:
        data: bytes = response.read()
    return data


def _upload(location: str, name: str, data: bytes, timeout: float) -> None:
    """HTTP(S) PUT to the location plus the file name, or FTP STOR into it."""
    url = urlsplit(location)
    if url.scheme in ("ftp", "ftps"):
        ftp = ftplib.FTP_TLS() if url.scheme == "ftps" else ftplib.FTP()
        ftp.connect(url.hostname or "", url.port or 21, timeout=timeout)
        ftp.login(unquote(url.username or "anonymous"), unquote(url.password or ""))
        if url.path.strip("/"):
            ftp.cwd(url.path)
        ftp.storbinary(f"STOR {name}", io.BytesIO(data))
        ftp.quit()
        return
    target = location if location.endswith("/") else location + "/"
    request = urllib.request.Request(target + name, data=data, method="PUT")
    request.add_header("Content-Type", "application/octet-stream")
    with urllib.request.urlopen(request, timeout=timeout) as response:
        if response.status >= 300:
            raise OSError(f"HTTP {response.status}")


class VirtualCharger:
    def __init__(
        self, charger_id: str, args: argparse.Namespace, stats: Stats, rng: random.Random
    ) -> None:
        self.charger_id = charger_id
        self.args = args
        self.stats = stats
        self.rng = rng
        self.connectors = args.connectors
        self.config = dict(CORE_KEYS)
        self.password: bytes | None = password_bytes(args.password) if args.password else None
        self.config["NumberOfConnectors"] = (str(args.connectors), True)
        self.sessions: dict[int, Session] = {}
        self.cp: SimCharger | None = None
        self.online = asyncio.Event()
        # Transaction messages in the order they were made (StartTransaction, MeterValues,
        # StopTransaction), each with the future its sender may wait on: one task sends
        # them, in order, whenever the charger is connected and booted (§4.7, §4.10).
        self.queue: list[tuple[Any, asyncio.Future[Any]]] = []
        self.flusher: asyncio.Task[Any] | None = None
        self.ready = asyncio.Event()  # booted on the current connection
        self.reader: asyncio.Future[Any] | None = None  # the current connection's reader
        self.offline_until = 0.0  # time.monotonic(): the link is down on purpose until then
        self.tasks: set[asyncio.Task[Any]] = set()
        self.statuses: dict[int, str] = {}
        self.rebooting = asyncio.Event()
        self.firmware_version = "1.0.0"
        self.firmware_state = "Idle"
        self.diagnostics_state = "Idle"
        # The Local Authorization List (tag -> idTagInfo) and its version (0: empty).
        self.local_list: dict[str, dict[str, Any]] = {}
        self.list_version = 0
        self.reservations: dict[int, Reservation] = {}  # by connector (0: any)
        # Charging profiles as received; kept across reconnects, a TxProfile only for
        # its transaction (OCPP 1.6 §3.13.4).
        self.profiles: list[Installed] = []
        # Root certificates and its own signed certificate (1.6 security extension).
        self.certificates = ChargerCertificates(charger_id, organization=args.cert_org)
        self.reconnect = asyncio.Event()

    def go_offline(self, seconds: float) -> None:
        """Drop the link now and stay offline for ``seconds`` (then reconnect as usual).
        Sessions go on charging by the profiles held; their messages are queued."""
        self.offline_until = time.monotonic() + seconds
        print(f"[simulate] {self.charger_id}: offline for {seconds:g} s", flush=True)
        if self.online.is_set():
            self.reconnect.set()

    def reconnect_soon(self) -> None:
        """Close the connection after the current answer: the next one uses the newly
        installed client certificate (sim_certificates)."""
        self.reconnect.set()

    async def renew_certificate(self) -> None:
        """SignCertificate (on --sign-certificate, or when triggered)."""
        assert self.cp is not None
        await request_certificate(self.cp, self.certificates)

    def spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def free_connector(self, id_tag: str | None = None) -> int | None:
        return next(
            (
                c
                for c in range(1, self.connectors + 1)
                if c not in self.sessions and self.may_start(c, id_tag)
            ),
            None,
        )

    # --- Smart Charging (OCPP 1.6 §3.13): the rules are in scripts/charging_schedule.py ---

    def install_profile(self, connector_id: int, profile: dict[str, Any]) -> None:
        """§5.16: a profile replaces the one with the same id, or the one with the same
        stack level and purpose on the same connector."""
        self.profiles = [
            p
            for p in self.profiles
            if p.profile["charging_profile_id"] != profile["charging_profile_id"]
            and not (
                p.connector_id == connector_id
                and p.profile["stack_level"] == profile["stack_level"]
                and p.profile["charging_profile_purpose"] == profile["charging_profile_purpose"]
            )
        ]
        # Whole seconds, as OCPP times go: a profile received now is in force in a
        # composite schedule asked for in the same second.
        received = datetime.now(UTC).replace(microsecond=0)
        self.profiles.append(Installed(connector_id, profile, received))

    def end_tx_profiles(self, connector: int) -> None:
        """A TxProfile ends with its transaction (§3.13.4)."""
        self.profiles = [
            p
            for p in self.profiles
            if not (
                p.connector_id == connector and p.profile["charging_profile_purpose"] == "TxProfile"
            )
        ]

    def limit(self, connector: int) -> Limit:
        """What a connector may draw now: the composite of the profiles in force."""
        session = self.sessions.get(connector)
        return limit_at(
            self.profiles,
            connector,
            datetime.now(UTC),
            tx_start=session.started_at if session else None,
            max_watts=MAX_POWER_W,
        )

    def limit_w(self, connector: int) -> float:
        return self.limit(connector).watts

    def composite_schedule(self, connector: int, duration: int, unit: str) -> Any:
        start = datetime.now(UTC).replace(microsecond=0)
        session = self.sessions.get(connector)
        periods = composite(
            self.profiles,
            connector,
            start,
            duration,
            unit,
            tx_start=session.started_at if session else None,
            max_watts=MAX_POWER_W,
        )
        return call_result.GetCompositeSchedule(
            status="Accepted",
            connector_id=connector,
            schedule_start=start.strftime("%Y-%m-%dT%H:%M:%SZ"),
            charging_schedule={
                "charging_rate_unit": unit,
                "duration": duration,
                "start_schedule": start.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "charging_schedule_period": [
                    {"start_period": p.start, "limit": p.limit}
                    | ({"number_phases": p.phases} if p.phases != 3 else {})
                    for p in periods
                ],
            },
        )

    def reservation_for(self, connector: int) -> Reservation | None:
        held = self.reservations.get(connector)
        if held is None and self.reservations.get(0) is not None:
            free = [c for c in range(1, self.connectors + 1) if c not in self.sessions]
            if len(free) <= 1:  # connector 0: the last free connector is held (§5.13)
                held = self.reservations[0]
        return held

    def may_start(self, connector: int, id_tag: str | None) -> bool:
        """A reserved connector starts only for its tag or one with its parent (§5.13)."""
        held = self.reservation_for(connector)
        if held is None:
            return True
        if id_tag is None:
            return False
        if id_tag.upper() == held.id_tag.upper():
            return True
        parent = (self.local_list.get(id_tag.upper()) or {}).get("parent_id_tag")
        return bool(held.parent_id_tag and parent and parent.upper() == held.parent_id_tag.upper())

    def end_reservation(self, reservation_id: int) -> Reservation | None:
        for connector, held in list(self.reservations.items()):
            if held.reservation_id == reservation_id:
                del self.reservations[connector]
                if connector > 0 and connector not in self.sessions:
                    self.spawn(self.status(connector, "Available"))
                return held
        return None

    async def expire_reservation(self, reservation_id: int, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))
        for held in self.reservations.values():
            if held.reservation_id == reservation_id and held.expiry <= time.monotonic():
                self.end_reservation(reservation_id)
                return

    def is_free(self, connector: int) -> bool:
        return 1 <= connector <= self.connectors and connector not in self.sessions

    def stop_transaction(self, transaction_id: int, reason: str) -> bool:
        for session in self.sessions.values():
            if session.transaction_id == transaction_id:
                session.reason = reason
                session.stop.set()
                return True
        return False

    async def send(self, payload: Any, *, transactional: bool = False) -> Any:
        """Send a CALL and return its answer. Transaction messages are queued behind the
        ones made before them and wait for a connection; others give None offline."""
        if transactional:
            return await self.post(payload)
        if self.cp is None or not self.online.is_set():
            return None
        try:
            result = await self._call(payload)
        except Exception as exc:
            self.stats.errors += 1
            log.debug("%s: %s failed: %s", self.charger_id, type(payload).__name__, exc)
            return None
        self.stats.messages += 1
        return result

    def post(self, payload: Any) -> asyncio.Future[Any]:
        """Queue a transaction message; the future gets its answer once it went out."""
        answer: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.queue.append((payload, answer))
        if self.flusher is None or self.flusher.done():
            self.flusher = asyncio.ensure_future(self._flush())
            self.tasks.add(self.flusher)
            self.flusher.add_done_callback(self.tasks.discard)
        return answer

    async def _flush(self) -> None:
        while self.queue:
            payload, answer = self.queue[0]
            await self.ready.wait()
            try:
                result = await self._call(payload)
            except ConnectionError:
                continue  # the link went: wait for the next connection
            except Exception as exc:
                self.stats.errors += 1
                log.debug("%s: %s failed: %s", self.charger_id, type(payload).__name__, exc)
                await asyncio.sleep(1 + self.rng.random())
                continue
            self.stats.messages += 1
            self.queue.pop(0)
            if not answer.done():
                answer.set_result(result)

    async def _call(self, payload: Any) -> Any:
        """One CALL on the current connection; ConnectionError as soon as it is lost (a
        CALL whose answer will never come does not wait for the response timeout)."""
        cp, reader = self.cp, self.reader
        if cp is None or reader is None or reader.done():
            raise ConnectionError("offline")
        call_task = asyncio.ensure_future(cp.call(payload, suppress=False))
        await asyncio.wait({call_task, reader}, return_when=asyncio.FIRST_COMPLETED)
        if not call_task.done():
            call_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await call_task
            raise ConnectionError("connection lost")
        return call_task.result()

    async def boot(self) -> Any:
        while True:
            result = await self.send(
                call.BootNotification(
                    charge_point_vendor="Voltaro",
                    charge_point_model="SimCharger",
                    charge_point_serial_number=f"SIM{abs(hash(self.charger_id)) % 10**8:08d}",
                    firmware_version=self.firmware_version,
                )
            )
            if result is None:
                return None
            if result.status == "Accepted":
                self.config["HeartbeatInterval"] = (str(result.interval), False)
                return result
            await asyncio.sleep(max(1, min(result.interval or 10, 30)))

    async def firmware_status(self, status: str) -> None:
        self.firmware_state = status
        await self.send(call.FirmwareStatusNotification(status=status))

    async def diagnostics_status(self, status: str) -> None:
        self.diagnostics_state = status
        await self.send(call.DiagnosticsStatusNotification(status=status))

    async def update_firmware(
        self, location: str, retrieve_date: str, retries: int, retry_interval: int | None
    ) -> None:
        """OCPP 1.6 §5.19: from the retrieve date, download (with retries), install, reboot."""
        try:
            at = datetime.fromisoformat(retrieve_date.replace("Z", "+00:00"))
            await asyncio.sleep(max(0.0, (at - datetime.now(UTC)).total_seconds()))
        except ValueError:
            pass
        await self.firmware_status("Downloading")
        image = None
        for attempt in range(retries + 1):
            if self.args.firmware_fail == "download":
                break
            try:
                image = await asyncio.to_thread(_download, location, 60)
                break
            except OSError as exc:
                log.info("%s: download %d failed: %s", self.charger_id, attempt + 1, exc)
                await asyncio.sleep(retry_interval or 1)
        if image is None:
            await self.firmware_status("DownloadFailed")
            return
        self.stats.firmware_bytes += len(image)
        await self.firmware_status("Downloaded")
        await self.firmware_status("Installing")
        await asyncio.sleep(self.args.install_seconds)
        if self.args.firmware_fail == "install":
            await self.firmware_status("InstallationFailed")
            return
        # The new version: the image's name (fw-2.1.bin: 2.1), else its digest.
        name = urlsplit(location).path.rsplit("/", 1)[-1]
        version = name.rsplit(".", 1)[0].split("-")[-1] or hashlib.sha256(image).hexdigest()[:8]
        self.firmware_version = version[:50]
        await self.firmware_status("Installed")
        await self.reboot("Reboot")

    async def upload_diagnostics(self, location: str, name: str) -> None:
        """OCPP 1.6 §5.9: upload a diagnostics file to the location."""
        await self.diagnostics_status("Uploading")
        lines = [f"{now()} {self.charger_id} firmware {self.firmware_version}"]
        lines += [f"connector {c}: {s}" for c, s in sorted(self.statuses.items())]
        data = ("\n".join(lines) + "\n").encode()
        try:
            if self.args.diagnostics_fail:
                raise OSError("upload failure requested (--diagnostics-fail)")
            await asyncio.to_thread(_upload, location, name, data, 60)
        except (OSError, ftplib.Error) as exc:
            log.info("%s: diagnostics upload failed: %s", self.charger_id, exc)
            await self.diagnostics_status("UploadFailed")
            return
        await self.diagnostics_status("Uploaded")

    async def heartbeat(self) -> None:
        await self.send(call.Heartbeat())

    async def status(self, connector: int, status: str, error: str = "NoError") -> None:
        self.statuses[connector] = status
        await self.send(
            call.StatusNotification(
                connector_id=connector, error_code=error, status=status, timestamp=now()
            )
        )

    async def report_status(self, connector: int | None) -> None:
        targets = [connector] if connector is not None else range(0, self.connectors + 1)
        for target in targets:
            await self.status(target, self.statuses.get(target, "Available"))

    def sampled(self, session: Session) -> list[dict[str, Any]]:
        limit = self.limit(session.connector)
        power = min(7000 + self.rng.uniform(-500, 500), limit.watts)
        phases = ("L1", "L2", "L3")[: limit.phases]  # the phases the limit allows
        values = [
            {
                "value": f"{session.meter_wh:.1f}",
                "measurand": "Energy.Active.Import.Register",
                "unit": "Wh",
            },
            {"value": f"{power:.0f}", "measurand": "Power.Active.Import", "unit": "W"},
        ]
        for phase in phases:
            values.append(
                {
                    "value": f"{power / len(phases) / 230:.1f}",
                    "measurand": "Current.Import",
                    "phase": phase,
                    "unit": "A",
                }
            )
            values.append(
                {
                    "value": f"{230 + self.rng.uniform(-3, 3):.1f}",
                    "measurand": "Voltage",
                    "phase": f"{phase}-N",
                    "unit": "V",
                }
            )
        return values

    async def meter_now(self, connector: int | None) -> None:
        """Sample now; the MeterValues are queued (sent at once when connected)."""
        for session in self.sessions.values():
            if connector in (None, session.connector):
                self.post(
                    call.MeterValues(
                        connector_id=session.connector,
                        transaction_id=session.transaction_id,
                        meter_value=[{"timestamp": now(), "sampled_value": self.sampled(session)}],
                    )
                )

    async def run_session(self, connector: int, id_tag: str) -> None:
        # The caller claimed id_tag in TAGS_IN_USE; it is released when the session ends.
        if not self.is_free(connector):
            TAGS_IN_USE.discard(id_tag)
            return
        session = Session(
            connector=connector,
            id_tag=id_tag,
            transaction_id=None,
            meter_wh=self.rng.uniform(1000, 50000),
        )
        self.sessions[connector] = session
        held = self.reservation_for(connector)
        reservation_id = None
        if held is not None:
            # The session uses the reservation (§4.8: its id goes in StartTransaction).
            reservation_id = held.reservation_id
            self.reservations = {
                c: r for c, r in self.reservations.items() if r.reservation_id != reservation_id
            }
        try:
            auth = await self.send(call.Authorize(id_tag=id_tag))
            if auth is not None and auth.id_tag_info["status"] != "Accepted":
                return
            await self.status(connector, "Preparing")
            started = await self.send(
                call.StartTransaction(
                    connector_id=connector,
                    id_tag=id_tag,
                    meter_start=int(session.meter_wh),
                    timestamp=now(),
                    reservation_id=reservation_id,
                ),
                transactional=True,
            )
            session.transaction_id = started.transaction_id
            self.stats.sessions_started += 1
            if started.id_tag_info["status"] != "Accepted":
                session.reason = "DeAuthorized"
            else:
                await self.status(connector, "Charging")
                deadline = time.monotonic() + self.args.session_length * self.rng.uniform(0.7, 1.3)
                while time.monotonic() < deadline and not session.stop.is_set():
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(
                            session.stop.wait(),
                            min(self.args.meter_interval, max(0.01, deadline - time.monotonic())),
                        )
                    watts = min(7000.0, self.limit_w(connector))
                    session.meter_wh += watts * self.args.meter_interval / 3600
                    if not session.stop.is_set():
                        await self.meter_now(connector)
            await self.send(
                call.StopTransaction(
                    transaction_id=session.transaction_id,
                    meter_stop=int(session.meter_wh),
                    timestamp=now(),
                    id_tag=id_tag,
                    reason=session.reason,
                    transaction_data=[
                        {
                            "timestamp": now(),
                            "sampled_value": [
                                {
                                    "value": f"{session.meter_wh:.0f}",
                                    "context": "Transaction.End",
                                    "measurand": "Energy.Active.Import.Register",
                                    "unit": "Wh",
                                }
                            ],
                        }
                    ],
                ),
                transactional=True,
            )
            self.stats.sessions_stopped += 1
            await self.status(connector, "Finishing")
            await self.status(connector, "Available")
        finally:
            self.sessions.pop(connector, None)
            self.end_tx_profiles(connector)
            TAGS_IN_USE.discard(id_tag)

    async def sessions_done(self) -> None:
        while self.sessions:  # noqa: ASYNC110 - sessions end on their own stop events
            await asyncio.sleep(0.05)

    async def reboot(self, reason: str) -> None:
        await asyncio.sleep(0.2)  # let the Reset answer go out first
        for session in list(self.sessions.values()):
            session.reason = reason
            session.stop.set()
        while self.sessions:  # noqa: ASYNC110 - sessions end on their own stop events
            await asyncio.sleep(0.05)
        self.rebooting.set()

    async def serve(self, stop_at: float) -> None:
        delay = 1.0
        while time.monotonic() < stop_at:
            away = min(self.offline_until, stop_at) - time.monotonic()
            if away > 0:
                await asyncio.sleep(away)  # offline on purpose (go_offline)
                delay = 1.0
                continue
            # Built for every connection: a certificate installed by CertificateSigned
            # is used from the next one on.
            context = tls_context(self.args, self.charger_id, self.certificates.client_pair)
            headers = {}
            if self.password is not None:
                # Profile 1/2: the raw bytes of the AuthorizationKey (R30), re-read on
                # every connection so that a provisioned password is used at once.
                token = base64.b64encode(self.charger_id.encode() + b":" + self.password)
                headers["Authorization"] = f"Basic {token.decode()}"
            try:
                async with websockets.connect(
                    f"{self.args.url.rstrip('/')}/{self.charger_id}",
                    subprotocols=["ocpp1.6"],  # type: ignore[list-item]
                    additional_headers=headers,
                    compression=None,
                    open_timeout=10,
                    ssl=context,
                ) as ws:
                    delay = 1.0
                    if self.certificates.client_pair is not None:
                        print(
                            f"[simulate] {self.charger_id}: connected with its signed "
                            f"certificate (serial {self.certificates.serial})",
                            flush=True,
                        )
                    await self.connected(ws, stop_at)
            except (OSError, websockets.WebSocketException, TimeoutError) as exc:
                log.info("%s: connection failed or lost: %s", self.charger_id, exc)
            self.online.clear()
            self.ready.clear()
            self.cp = None
            if time.monotonic() >= stop_at:
                break
            if self.offline_until > time.monotonic():
                continue  # no back-off: it comes back when its offline time is over
            await asyncio.sleep(delay * self.rng.uniform(0.5, 1.5))
            delay = min(delay * 2, 30)

    async def connected(self, ws: Any, stop_at: float) -> None:
        self.cp = SimCharger(self, ws)
        self.stats.connected += 1
        reader = self.reader = asyncio.ensure_future(self.cp.start())
        try:
            self.online.set()
            if await self.boot() is None:
                return
            if self.offline_until:
                self.offline_until = 0.0
                print(f"[simulate] {self.charger_id}: back online", flush=True)
            self.ready.set()  # queued transaction messages go out now
            await self.report_status(None)
            self.rebooting.clear()
            if self.args.sign_certificate and self.certificates.client_pair is None:
                self.spawn(self.renew_certificate())
            next_session = time.monotonic() + self.rng.uniform(0, self.args.session_every)
            while time.monotonic() < stop_at and not reader.done():
                if self.rebooting.is_set() or self.reconnect.is_set():
                    self.reconnect.clear()
                    await ws.close()
                    return
                interval = float(self.config["HeartbeatInterval"][0]) or 300
                # --session-every 0: no local sessions, so nothing is due but heartbeats.
                due = next_session if self.args.session_every > 0 else float("inf")
                wait = min(
                    interval,
                    max(0.05, due - time.monotonic()),
                    max(0.05, stop_at - time.monotonic()),
                )
                timers = {
                    asyncio.ensure_future(asyncio.sleep(wait)),
                    asyncio.ensure_future(self.reconnect.wait()),
                    asyncio.ensure_future(self.rebooting.wait()),  # Reset, new firmware
                }
                await asyncio.wait({reader, *timers}, return_when=asyncio.FIRST_COMPLETED)
                for timer in timers:
                    timer.cancel()
                if self.reconnect.is_set() or self.rebooting.is_set():
                    continue
                if time.monotonic() >= stop_at:
                    continue
                if time.monotonic() >= next_session and self.args.session_every > 0:
                    tag = next((t for t in self.args.tags if t not in TAGS_IN_USE), None)
                    connector = self.free_connector(tag)
                    if connector is not None and tag is not None:
                        # Claimed now, before the task runs, so that the next charger
                        # picks another tag (one tag charges on one connector at a time).
                        TAGS_IN_USE.add(tag)
                        self.spawn(self.run_session(connector, tag))
                    next_session = time.monotonic() + self.args.session_every * self.rng.uniform(
                        0.5, 1.5
                    )
                else:
                    await self.heartbeat()
            if time.monotonic() >= stop_at:
                # End open sessions properly before going away (reason Local).
                for session in self.sessions.values():
                    session.stop.set()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.sessions_done(), 10)
        finally:
            self.stats.connected -= 1
            self.online.clear()
            self.ready.clear()
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reader


async def summary(stats: Stats, stop_at: float, every: float) -> None:
    while time.monotonic() < stop_at:
        await asyncio.sleep(min(every, max(0.1, stop_at - time.monotonic())))
        print(
            f"[simulate] connected={stats.connected} sessions started={stats.sessions_started}"
            f" stopped={stats.sessions_stopped} messages={stats.messages}"
            f" errors={stats.errors}",
            flush=True,
        )


async def main_async(args: argparse.Namespace) -> int:
    rng = random.Random(args.seed)
    stats = Stats()
    stop_at = time.monotonic() + (args.duration if args.duration > 0 else float("inf"))
    chargers = [
        VirtualCharger(f"{args.id_prefix}{n}", args, stats, random.Random(rng.random()))
        for n in range(1, args.chargers + 1)
    ]
    tasks = [asyncio.ensure_future(c.serve(stop_at)) for c in chargers]
    tasks.append(asyncio.ensure_future(summary(stats, stop_at, args.summary_every)))
    by_id = {c.charger_id: c for c in chargers}
    # Not awaited by gather: they end with the run (cancelled below).
    extras = [
        asyncio.ensure_future(offline_later(by_id[cid], at, seconds))
        for cid, at, seconds in args.offline
    ]
    if args.commands_stdin:
        extras.append(asyncio.ensure_future(read_commands(by_id)))
    try:
        await asyncio.gather(*tasks)
    finally:
        for task in extras:
            task.cancel()
        for charger in chargers:
            for task in list(charger.tasks):
                task.cancel()
    print(
        f"[simulate] done: sessions started={stats.sessions_started} "
        f"stopped={stats.sessions_stopped} messages={stats.messages} errors={stats.errors}",
        flush=True,
    )
    return 0


async def offline_later(charger: VirtualCharger, at: float, seconds: float) -> None:
    """--offline ID@AT+FOR: drop the link AT seconds after the start, for FOR seconds."""
    await asyncio.sleep(at)
    charger.go_offline(seconds)


async def read_commands(chargers: dict[str, VirtualCharger]) -> None:
    """--commands-stdin: one command per line on standard input,
    ``offline ID SECONDS`` (drop ID's link now, for SECONDS)."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := await reader.readline():
        words = line.decode(errors="replace").split()
        if not words:
            continue
        try:
            if words[0] != "offline" or len(words) != 3 or words[1] not in chargers:
                raise ValueError
            seconds = float(words[2])
        except ValueError:
            print(f"[simulate] unknown command: {' '.join(words)}", file=sys.stderr, flush=True)
            continue
        chargers[words[1]].go_offline(seconds)


def parse_offline(text: str) -> tuple[str, float, float]:
    """ID@AT+FOR, e.g. SIM-3@60+120."""
    charger_id, _, when = text.rpartition("@")
    at, plus, seconds = when.partition("+")
    try:
        values = (float(at), float(seconds))
    except ValueError:
        values = (-1.0, 0.0)
    if not charger_id or not plus or values[0] < 0 or values[1] <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not ID@AT+FOR (e.g. SIM-3@60+120)")
    return charger_id, values[0], values[1]


_HEX = set(string.hexdigits)


def password_bytes(text: str) -> bytes:
    """32-40 hex digits are an AuthorizationKey: the charger sends the bytes (R30)."""
    if 32 <= len(text) <= 40 and len(text) % 2 == 0 and set(text) <= _HEX:
        return bytes.fromhex(text)
    return text.encode()


def tls_context(
    args: argparse.Namespace, charger_id: str, signed: tuple[str, str] | None = None
) -> ssl.SSLContext | None:
    if not args.url.startswith("wss://"):
        return None
    context = ssl.create_default_context(cafile=args.ca)
    if signed is not None:
        context.load_cert_chain(*signed)  # installed from CertificateSigned
    elif args.cert:
        context.load_cert_chain(
            args.cert.replace("{id}", charger_id),
            args.key.replace("{id}", charger_id) if args.key else None,
        )
    return context


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "url", help="Central System URL without the charger id, e.g. ws://127.0.0.1:9000/ocpp"
    )
    p.add_argument("--chargers", type=int, default=1)
    p.add_argument("--connectors", type=int, default=2)
    p.add_argument("--id-prefix", default="SIM-")
    p.add_argument(
        "--password",
        help="HTTP Basic password (username = charger id; 32-40 hex digits are sent as the "
        "bytes they stand for, as AuthorizationKey is); ChangeConfiguration AuthorizationKey "
        "replaces it for the next connection",
    )
    p.add_argument("--ca", help="PEM CA bundle that verifies the server (wss:// URLs)")
    p.add_argument(
        "--cert",
        help="client certificate (PEM) for security profile 3; {id} is replaced by the "
        "charger id, e.g. certs/{id}.pem",
    )
    p.add_argument("--key", help="its private key (PEM); {id} as for --cert")
    p.add_argument(
        "--tag",
        default="SIMTAG",
        help="id tag(s) for local sessions, comma-separated; each charges on one "
        "connector at a time",
    )
    p.add_argument(
        "--session-every",
        type=float,
        default=60.0,
        help="seconds between sessions per charger (0: only remote starts)",
    )
    p.add_argument(
        "--sign-certificate",
        action="store_true",
        help="after booting, send SignCertificate (a new EC P-256 key, CN = the id) and "
        "reconnect with the certificate CertificateSigned brings",
    )
    p.add_argument("--cert-org", help="the O of that CSR (the CPO's name)")
    p.add_argument("--session-length", type=float, default=120.0)
    p.add_argument("--meter-interval", type=float, default=10.0)
    p.add_argument("--duration", type=float, default=0, help="stop after S seconds (0: never)")
    p.add_argument("--summary-every", type=float, default=5.0)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument(
        "--firmware-fail",
        choices=("none", "download", "install"),
        default="none",
        help="report DownloadFailed or InstallationFailed on UpdateFirmware",
    )
    p.add_argument("--install-seconds", type=float, default=1.0)
    p.add_argument(
        "--diagnostics-fail", action="store_true", help="report UploadFailed on GetDiagnostics"
    )
    add_security_arguments(p)
    p.add_argument(
        "--offline",
        action="append",
        default=[],
        type=parse_offline,
        metavar="ID@AT+FOR",
        help="charger ID drops its link AT seconds after the start and stays offline FOR "
        "seconds while its cars keep charging by the profiles it holds (repeatable)",
    )
    p.add_argument(
        "--commands-stdin",
        action="store_true",
        help="read commands from standard input: 'offline ID SECONDS' drops ID's link now",
    )
    p.add_argument("--log-level", default="WARNING")
    args = p.parse_args(argv)
    args.tags = [t.strip() for t in args.tag.split(",") if t.strip()]
    if not args.tags:
        p.error("--tag needs at least one id tag")
    if args.chargers < 1 or args.connectors < 1:
        p.error("--chargers and --connectors must be at least 1")
    ids = {f"{args.id_prefix}{n}" for n in range(1, args.chargers + 1)}
    for charger_id, _, _ in args.offline:
        if charger_id not in ids:
            p.error(f"--offline: no simulated charger {charger_id}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(name)s: %(message)s")
    logging.getLogger("ocpp").setLevel(logging.WARNING)
    try:
        return asyncio.run(main_async(args))
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
