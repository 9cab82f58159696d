"""Charger certificates (OCPP 1.6 security extension, whitepaper ed. 3): what each
charger holds, deleting one by the index of the last list, and SignCertificate (check
the CSR, answer, sign, send CertificateSigned). Shared by the control socket and the
HTTP API; the commands themselves go through the command layer (audited)."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

import trio
from cryptography import x509
from sqlalchemy.exc import SQLAlchemyError

from voltaro.domain.certificates import CertificateError, check_csr, describe
from voltaro.domain.commands import (
    CertificateSigned,
    CommandError,
    CommandErrorCode,
    DeleteCertificate,
)
from voltaro.domain.ports import StorageUnavailable
from voltaro.domain.timestamps import format_utc, utc_now
from voltaro.net.security_events import SecurityEvents
from voltaro.service.authority import Authority, CaError, authority_from_settings
from voltaro.service.commands import CommandService
from voltaro.settings import Settings
from voltaro.store import certificates, chargers
from voltaro.store.db import Database

log = logging.getLogger(__name__)


def held_view(index: int, held: certificates.HeldCertificate) -> dict[str, Any]:
    return {
        "index": index,
        "certificate_type": held.certificate_type.value,
        **{
            "hash_algorithm": held.hash_data.hash_algorithm.value,
            "issuer_name_hash": held.hash_data.issuer_name_hash,
            "issuer_key_hash": held.hash_data.issuer_key_hash,
            "serial_number": held.hash_data.serial_number,
        },
        "source": held.source,
        "at": format_utc(held.at),
    }


def signing_view(signing: certificates.Signing) -> dict[str, Any]:
    return {
        "id": signing.id,
        "received_at": format_utc(signing.received_at),
        "status": signing.status,
        "detail": signing.detail,
        "subject": signing.subject,
        "serial_number": signing.serial_number,
        "not_after": format_utc(signing.not_after) if signing.not_after else None,
        "updated_at": format_utc(signing.updated_at),
    }


async def certificates_state(db: Database, charger_id: str) -> dict[str, Any]:
    """What the charger last reported or accepted, numbered from 1 (the index `certificates
    delete --index` takes), and its latest SignCertificate requests, newest first."""
    if await db.run(chargers.get_charger, charger_id) is None:
        raise CommandError(CommandErrorCode.NOT_FOUND, f"unknown charger {charger_id}")
    held = await db.run(certificates.held, charger_id)
    signings = await db.run(certificates.recent_signings, charger_id)
    return {
        "charger_id": charger_id,
        "installed": [held_view(i, h) for i, h in enumerate(held, start=1)],
        "signings": [signing_view(s) for s in signings],
    }


async def delete_by_index(db: Database, charger_id: str, index: int) -> DeleteCertificate:
    """The DeleteCertificate for entry ``index`` of certificates_state's list."""
    held = await db.run(certificates.held, charger_id)
    if not 1 <= index <= len(held):
        raise CommandError(
            CommandErrorCode.BAD_ARGUMENTS,
            f"no certificate {index} for {charger_id}: "
            + (
                f"the stored list has {len(held)} (see `certificates show`)"
                if held
                else "nothing stored; run `certificates list` first"
            ),
        )
    return DeleteCertificate(certificate_hash_data=held[index - 1].hash_data)


# certificate_signings.status values.
REJECTED = "rejected"  # the CSR failed the checks: answered Rejected
ACCEPTED = "accepted"  # answered Accepted; signing and CertificateSigned to follow
DELIVERED = "delivered"  # the charger accepted the CertificateSigned chain
REFUSED = "refused"  # the charger answered CertificateSigned Rejected
FAILED = "failed"  # the CA or the hook failed, or the charger never answered


class CertificateSigner:
    """SignCertificate (whitepaper ed. 3, A02 "Update Charge Point certificate by request
    of Central System", A03 "... initiated by Charge Point"): check the CSR and answer,
    then sign it and send CertificateSigned through the command layer (audited)."""

    ACTOR = "voltaro (SignCertificate)"
    QUEUE = 256  # accepted CSRs waiting to be signed; beyond it a signing fails at once

    def __init__(
        self,
        db: Database,
        commands: CommandService,
        settings: Settings,
        *,
        security: SecurityEvents | None = None,
        authority: Authority | None = None,
    ) -> None:
        self._db = db
        self._commands = commands
        self._settings = settings
        self._security = security
        self._authority = authority if authority is not None else authority_from_settings(settings)
        # Signing outlives the charger's connection (it may reconnect meanwhile), so it
        # runs in this service's nursery, not the connection's.
        self._jobs_send, self._jobs = trio.open_memory_channel[tuple[str, int, str]](self.QUEUE)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            task_status.started()
            async for charger_id, signing_id, csr in self._jobs:
                nursery.start_soon(self._guarded, charger_id, signing_id, csr)

    async def schedule(self, charger_id: str, signing_id: int, csr: str) -> None:
        """Sign an accepted CSR and send CertificateSigned, in the background."""
        try:
            self._jobs_send.send_nowait((charger_id, signing_id, csr))
        except trio.WouldBlock:
            await self._finish(signing_id, FAILED, "too many certificate signings at once")

    async def _guarded(self, charger_id: str, signing_id: int, csr: str) -> None:
        try:
            await self.deliver(charger_id, signing_id, csr)
        except Exception as exc:  # never reaches the root nursery
            log.exception("charger=%s SignCertificate #%d failed", charger_id, signing_id)
            await self._finish(signing_id, FAILED, f"internal error ({type(exc).__name__})")

    def _event(self, kind: str, charger_id: str, detail: str) -> None:
        if self._security is not None:
            self._security.record(kind, charger_id=charger_id, detail=detail)
        else:
            log.warning("security: event=%s charger=%s detail=%s", kind, charger_id, detail)

    async def review(self, charger_id: str, csr: str, received_at: datetime) -> int | None:
        """Check the CSR and record the request; the signing id when it is accepted
        (to sign after the answer), None when it is answered Rejected."""
        if self._authority is None:
            reason = "no CA configured (ca_certfile and ca_keyfile, or ca_hook)"
            log.warning("charger=%s SignCertificate rejected: %s", charger_id, reason)
            await self._db.run(
                certificates.record_signing,
                charger_id,
                received_at=received_at,
                status=REJECTED,
                detail=reason,
            )
            return None
        try:
            checked = check_csr(
                csr,
                charger_id=charger_id,
                # Never the reported serial number: it is whatever the charger's
                # BootNotification says, so a CSR for it would let any admitted charger
                # have another charger's serial signed and open that charger's profile 3
                # identity with it (the listener takes a CN equal to the stored serial).
                serial_number=None,
                organization=self._settings.certificate_organization,
            )
        except CertificateError as exc:
            await self._db.run(
                certificates.record_signing,
                charger_id,
                received_at=received_at,
                status=REJECTED,
                detail=str(exc),
            )
            # A CSR for another identity or a weak key: someone may be probing.
            self._event("csr_rejected", charger_id, str(exc))
            return None
        subject = f"CN={checked.common_name}" + (
            f",O={checked.organization}" if checked.organization else ""
        )
        signing_id: int = await self._db.run(
            certificates.record_signing,
            charger_id,
            received_at=received_at,
            status=ACCEPTED,
            detail=f"{checked.key}; signing by the {self._authority.name}",
            subject=subject,
        )
        log.info(
            "charger=%s SignCertificate accepted (%s, %s); signing",
            charger_id,
            subject,
            checked.key,
        )
        return signing_id

    async def deliver(self, charger_id: str, signing_id: int, csr: str) -> None:
        """Sign and send CertificateSigned; every outcome is stored and logged."""
        assert self._authority is not None
        try:
            signed = await self._authority.sign(csr)
        except CaError as exc:
            await self._finish(signing_id, FAILED, f"the {self._authority.name} failed: {exc}")
            self._event("certificate_signing_failed", charger_id, str(exc))
            return
        leaf = signed.certificate
        about = describe(leaf)
        summary = f"{about['subject']} serial {about['serial_number']} until {about['not_after']}"
        try:
            outcome = await self._commands.execute(
                charger_id,
                CertificateSigned(certificate_chain=signed.chain, summary=summary),
                actor=self.ACTOR,
            )
        except CommandError as exc:
            await self._finish(
                signing_id,
                FAILED,
                f"signed ({summary}) but not delivered: {exc.code}: {exc.message}",
                leaf,
            )
            log.warning("charger=%s CertificateSigned not delivered: %s", charger_id, exc.message)
            return
        status = DELIVERED if outcome.status == "Accepted" else REFUSED
        await self._finish(
            signing_id, status, f"CertificateSigned {outcome.status}: {summary}", leaf
        )
        log.info("charger=%s CertificateSigned %s: %s", charger_id, outcome.status, summary)

    async def _finish(
        self,
        signing_id: int,
        status: str,
        detail: str,
        leaf: x509.Certificate | None = None,
    ) -> None:
        try:
            # Shielded: the outcome is recorded even when the server is stopping.
            with trio.CancelScope(shield=True), trio.move_on_after(10):
                await self._db.run(
                    certificates.update_signing,
                    signing_id,
                    status=status,
                    at=utc_now(),
                    detail=detail,
                    serial_number=format(leaf.serial_number, "x") if leaf else None,
                    not_after=leaf.not_valid_after_utc if leaf else None,
                )
        except (SQLAlchemyError, StorageUnavailable) as exc:
            log.error(
                "SignCertificate #%d outcome %s not stored: %s (%s)",
                signing_id,
                status,
                exc,
                detail,
            )
