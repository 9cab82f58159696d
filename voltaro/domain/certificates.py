"""Certificates of the OCPP 1.6 security extension (security whitepaper edition 3): the
hash data that names an installed certificate, the checks on a charger's CSR, and the
identity rule shared by profile 3 client certificates and CSRs. Pure: PEM text in,
values or a one-line reason out (the `cryptography` package parses; no IO).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID


class CertificateUse(StrEnum):
    """CertificateUseEnumType (InstallCertificate.req, GetInstalledCertificateIds.req)."""

    CENTRAL_SYSTEM_ROOT = "CentralSystemRootCertificate"
    MANUFACTURER_ROOT = "ManufacturerRootCertificate"


# ctl/console short names -> the OCPP value.
USE_NAMES = {
    "central": CertificateUse.CENTRAL_SYSTEM_ROOT,
    "manufacturer": CertificateUse.MANUFACTURER_ROOT,
}


class HashAlgorithm(StrEnum):
    """HashAlgorithmEnumType (CertificateHashDataType)."""

    SHA256 = "SHA256"
    SHA384 = "SHA384"
    SHA512 = "SHA512"


class CertificateError(ValueError):
    """A certificate or CSR that cannot be used; the message says why in one line."""


@dataclass(frozen=True, slots=True, kw_only=True)
class CertificateHashData:
    """CertificateHashDataType: names one certificate on a charger, as an OCSP CertID
    does (RFC 6960 §4.1.1): hashes of the issuer's DER name and public key, the serial
    number in hex without leading zeroes."""

    hash_algorithm: HashAlgorithm
    issuer_name_hash: str
    issuer_key_hash: str
    serial_number: str

    def to_wire(self) -> dict[str, str]:
        return {
            "hashAlgorithm": self.hash_algorithm.value,
            "issuerNameHash": self.issuer_name_hash,
            "issuerKeyHash": self.issuer_key_hash,
            "serialNumber": self.serial_number,
        }

    def same_certificate(self, other: CertificateHashData) -> bool:
        """Hex compared without regard to case, serials without leading zeroes."""
        return (
            self.hash_algorithm is other.hash_algorithm
            and self.issuer_name_hash.lower() == other.issuer_name_hash.lower()
            and self.issuer_key_hash.lower() == other.issuer_key_hash.lower()
            and _serial(self.serial_number) == _serial(other.serial_number)
        )


def _serial(text: str) -> str:
    return text.lower().lstrip("0") or "0"


def _hex(text: Any, name: str, limit: int) -> str:
    if not isinstance(text, str) or not text:
        raise CertificateError(f"{name} is required (hex)")
    if len(text) > limit:
        raise CertificateError(f"{name} is {len(text)} characters; OCPP allows at most {limit}")
    try:
        int(text, 16)
    except ValueError:
        raise CertificateError(f"{name} must be hexadecimal, got {text!r}") from None
    return text


def parse_hash_data(raw: Any) -> CertificateHashData:
    """CertificateHashData from the wire (camelCase) or from snake_case arguments."""
    if not isinstance(raw, dict):
        raise CertificateError("certificate hash data must be an object")

    def get(camel: str, snake: str) -> Any:
        return raw.get(camel, raw.get(snake))

    algorithm = get("hashAlgorithm", "hash_algorithm")
    match = next((a for a in HashAlgorithm if str(algorithm).upper() == a.value), None)
    if match is None:
        raise CertificateError(
            f"hash algorithm must be one of {', '.join(a.value for a in HashAlgorithm)}, "
            f"got {algorithm!r}"
        )
    return CertificateHashData(
        hash_algorithm=match,
        issuer_name_hash=_hex(get("issuerNameHash", "issuer_name_hash"), "issuer name hash", 128),
        issuer_key_hash=_hex(get("issuerKeyHash", "issuer_key_hash"), "issuer key hash", 128),
        serial_number=_hex(get("serialNumber", "serial_number"), "serial number", 40),
    )


def load_certificate(pem: str | bytes) -> x509.Certificate:
    data = pem.encode() if isinstance(pem, str) else pem
    try:
        return x509.load_pem_x509_certificate(data)
    except ValueError:
        raise CertificateError("not a PEM certificate") from None


def load_certificates(pem: str | bytes) -> list[x509.Certificate]:
    """Every certificate of a PEM bundle or chain, in order."""
    data = pem.encode() if isinstance(pem, str) else pem
    try:
        found = x509.load_pem_x509_certificates(data)
    except ValueError:
        raise CertificateError("not a PEM certificate") from None
    return found


def _subject_public_key(certificate: x509.Certificate) -> bytes:
    """The subjectPublicKey BIT STRING's bytes (RFC 6960 issuerKeyHash: "excluding the
    tag and length fields"), read from the SubjectPublicKeyInfo DER."""
    der = certificate.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    _, body = _tlv(der, 0)  # SubjectPublicKeyInfo SEQUENCE
    end_of_algorithm, _ = _tlv(der, body)  # AlgorithmIdentifier: skipped
    tag_at = end_of_algorithm
    if der[tag_at] != 0x03:
        raise CertificateError("unexpected SubjectPublicKeyInfo encoding")
    end, start = _tlv(der, tag_at)
    return der[start + 1 : end]  # the first content byte counts unused bits (0)


def _tlv(der: bytes, at: int) -> tuple[int, int]:
    """(end of this TLV, start of its content) for the DER TLV at ``at``."""
    length = der[at + 1]
    start = at + 2
    if length & 0x80:
        count = length & 0x7F
        length = int.from_bytes(der[start : start + count], "big")
        start += count
    return start + length, start


def hash_data(
    certificate: x509.Certificate,
    issuer: x509.Certificate | None = None,
    algorithm: HashAlgorithm = HashAlgorithm.SHA256,
) -> CertificateHashData:
    """The CertificateHashData of ``certificate``. Its issuer's key is needed: a root
    (self-signed, what InstallCertificate installs) is its own issuer; for any other give
    ``issuer``, else CertificateError."""
    if issuer is None:
        if certificate.issuer != certificate.subject:
            raise CertificateError(
                "the certificate is not self-signed: its issuer's certificate is needed "
                "for the issuer key hash"
            )
        issuer = certificate
    elif issuer.subject != certificate.issuer:
        raise CertificateError("the issuer certificate given is not the certificate's issuer")
    digest = {
        HashAlgorithm.SHA256: hashlib.sha256,
        HashAlgorithm.SHA384: hashlib.sha384,
        HashAlgorithm.SHA512: hashlib.sha512,
    }[algorithm]
    return CertificateHashData(
        hash_algorithm=algorithm,
        issuer_name_hash=digest(certificate.issuer.public_bytes()).hexdigest(),
        issuer_key_hash=digest(_subject_public_key(issuer)).hexdigest(),
        serial_number=format(certificate.serial_number, "x"),
    )


def _attributes(name: x509.Name, oid: x509.ObjectIdentifier) -> tuple[str, ...]:
    return tuple(str(a.value) for a in name.get_attributes_for_oid(oid))


def identity_matches(
    common_names: tuple[str, ...], charger_id: str, serial_number: str | None
) -> bool:
    """Whether a certificate's subject CN names this charge point: its identity, or the
    serial number it reported in BootNotification: the security whitepaper (ed. 3,
    profile 3 requirements) has the CN hold "the unique serial number of the Charge
    Point", which many chargers use as their identity and some do not."""
    return charger_id in common_names or (bool(serial_number) and serial_number in common_names)


def organization_matches(organizations: tuple[str, ...], required: str) -> bool:
    """The O RDN names the CPO (whitepaper ed. 3, profile 3: the certificate is owned
    by the CPO), checked only when ``certificate_organization`` is configured."""
    return not required or required in organizations


@dataclass(frozen=True, slots=True, kw_only=True)
class CheckedCsr:
    common_name: str
    organization: str | None
    key: str  # "RSA 2048", "EC secp256r1"


# EC curves the whitepaper's cipher suites can use (A00.FR.304/305: P-256, P-384).
_CURVES = {"secp256r1", "secp384r1"}
MIN_RSA_BITS = 2048


def check_csr(
    pem: str,
    *,
    charger_id: str,
    serial_number: str | None = None,
    organization: str = "",
) -> CheckedCsr:
    """A SignCertificate CSR a charger may get signed (whitepaper A02/A03): PEM PKCS#10
    with a valid self-signature, an RSA key of 2048 bits or more or an EC P-256/P-384
    key, the subject CN this charge point's (identity_matches) and, if configured, the
    O the CPO's.

    Raises:
        CertificateError: with a one-line reason (used in the security event).
    """
    try:
        csr = x509.load_pem_x509_csr(pem.encode())
    except (ValueError, UnicodeEncodeError):
        raise CertificateError("not a PEM certificate signing request") from None
    try:
        key = csr.public_key()
        valid = csr.is_signature_valid
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise CertificateError(f"unreadable CSR: {exc}") from None
    if not valid:
        raise CertificateError("the CSR's signature does not verify")
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < MIN_RSA_BITS:
            raise CertificateError(
                f"RSA key of {key.key_size} bits; at least {MIN_RSA_BITS} are required"
            )
        described = f"RSA {key.key_size}"
    elif isinstance(key, ec.EllipticCurvePublicKey):
        if key.curve.name not in _CURVES:
            raise CertificateError(f"EC curve {key.curve.name}; P-256 or P-384 is required")
        described = f"EC {key.curve.name}"
    else:
        raise CertificateError(f"{type(key).__name__} keys are not accepted; use RSA or EC")
    names = _attributes(csr.subject, NameOID.COMMON_NAME)
    if not identity_matches(names, charger_id, serial_number):
        raise CertificateError(
            f"subject CN {', '.join(names) or '(none)'} is not the charge point's "
            f"identity {charger_id}"
            + (f" or serial number {serial_number}" if serial_number else "")
        )
    organizations = _attributes(csr.subject, NameOID.ORGANIZATION_NAME)
    if not organization_matches(organizations, organization):
        raise CertificateError(
            f"subject O {', '.join(organizations) or '(none)'} is not {organization!r}"
        )
    common = charger_id if charger_id in names else str(serial_number)
    return CheckedCsr(
        common_name=common,
        organization=organizations[0] if organizations else None,
        key=described,
    )


def describe(certificate: x509.Certificate) -> dict[str, str]:
    """What an operator reads about a certificate (no key material)."""
    return {
        "subject": certificate.subject.rfc4514_string(),
        "issuer": certificate.issuer.rfc4514_string(),
        "serial_number": format(certificate.serial_number, "x"),
        "not_before": certificate.not_valid_before_utc.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "not_after": certificate.not_valid_after_utc.strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
