"""What each charger holds of the 1.6 security extension's certificates, and its
SignCertificate requests with their outcome (docs/security.md, "Charger certificates")."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from voltaro.domain.certificates import CertificateHashData, CertificateUse, HashAlgorithm
from voltaro.store.schema import CertificateSigningRow, ChargerCertificateRow

REPORTED = "reported"  # the charger listed it (GetInstalledCertificateIds)
INSTALLED = "installed"  # it accepted our InstallCertificate (not listed since)


@dataclass(frozen=True, slots=True, kw_only=True)
class HeldCertificate:
    certificate_type: CertificateUse
    hash_data: CertificateHashData
    source: str
    at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class Signing:
    id: int
    charger_id: str
    received_at: datetime
    status: str  # rejected | accepted | signed | delivered | failed
    detail: str | None
    subject: str | None
    serial_number: str | None
    not_after: datetime | None
    updated_at: datetime


def _row(
    charger_id: str, use: CertificateUse, data: CertificateHashData, source: str, at: datetime
) -> ChargerCertificateRow:
    return ChargerCertificateRow(
        charger_id=charger_id,
        certificate_type=use.value,
        hash_algorithm=data.hash_algorithm.value,
        issuer_name_hash=data.issuer_name_hash,
        issuer_key_hash=data.issuer_key_hash,
        serial_number=data.serial_number,
        source=source,
        at=at,
    )


def replace_reported(
    s: Session,
    charger_id: str,
    use: CertificateUse,
    reported: list[CertificateHashData],
    at: datetime,
) -> None:
    """The charger's answer to GetInstalledCertificateIds is the truth for that type."""
    s.execute(
        delete(ChargerCertificateRow).where(
            ChargerCertificateRow.charger_id == charger_id,
            ChargerCertificateRow.certificate_type == use.value,
        )
    )
    for data in reported:
        s.add(_row(charger_id, use, data, REPORTED, at))


def add_installed(
    s: Session, charger_id: str, use: CertificateUse, data: CertificateHashData, at: datetime
) -> None:
    for row in _rows(s, charger_id):
        if row.certificate_type == use.value and _data(row).same_certificate(data):
            return
    s.add(_row(charger_id, use, data, INSTALLED, at))


def remove(s: Session, charger_id: str, data: CertificateHashData) -> int:
    gone = 0
    for row in _rows(s, charger_id):
        if _data(row).same_certificate(data):
            s.delete(row)
            gone += 1
    return gone


def _rows(s: Session, charger_id: str) -> list[ChargerCertificateRow]:
    return list(
        s.scalars(
            select(ChargerCertificateRow)
            .where(ChargerCertificateRow.charger_id == charger_id)
            .order_by(ChargerCertificateRow.certificate_type, ChargerCertificateRow.id)
        )
    )


def _data(row: ChargerCertificateRow) -> CertificateHashData:
    return CertificateHashData(
        hash_algorithm=HashAlgorithm(row.hash_algorithm),
        issuer_name_hash=row.issuer_name_hash,
        issuer_key_hash=row.issuer_key_hash,
        serial_number=row.serial_number,
    )


def held(s: Session, charger_id: str) -> list[HeldCertificate]:
    """In a stable order (type, then as stored): the index `certificates delete
    --index N` refers to."""
    return [
        HeldCertificate(
            certificate_type=CertificateUse(row.certificate_type),
            hash_data=_data(row),
            source=row.source,
            at=row.at,
        )
        for row in _rows(s, charger_id)
    ]


def record_signing(
    s: Session,
    charger_id: str,
    *,
    received_at: datetime,
    status: str,
    detail: str | None = None,
    subject: str | None = None,
) -> int:
    row = CertificateSigningRow(
        charger_id=charger_id,
        received_at=received_at,
        status=status,
        detail=detail,
        subject=subject,
        updated_at=received_at,
    )
    s.add(row)
    s.flush()
    return row.id


def update_signing(
    s: Session,
    signing_id: int,
    *,
    status: str,
    at: datetime,
    detail: str | None = None,
    serial_number: str | None = None,
    not_after: datetime | None = None,
) -> None:
    row = s.get(CertificateSigningRow, signing_id)
    if row is None:
        return
    row.status = status
    row.updated_at = at
    if detail is not None:
        row.detail = detail
    if serial_number is not None:
        row.serial_number = serial_number
    if not_after is not None:
        row.not_after = not_after


def recent_signings(s: Session, charger_id: str, limit: int = 20) -> list[Signing]:
    rows = s.scalars(
        select(CertificateSigningRow)
        .where(CertificateSigningRow.charger_id == charger_id)
        .order_by(CertificateSigningRow.received_at.desc(), CertificateSigningRow.id.desc())
        .limit(limit)
    )
    return [
        Signing(
            id=r.id,
            charger_id=r.charger_id,
            received_at=r.received_at,
            status=r.status,
            detail=r.detail,
            subject=r.subject,
            serial_number=r.serial_number,
            not_after=r.not_after,
            updated_at=r.updated_at,
        )
        for r in rows
    ]
