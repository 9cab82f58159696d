"""voltaro.domain.certificates: hash data checked against `cryptography`'s OCSP request
builder (RFC 6960 CertID, an independent implementation) for EC and RSA issuers, a
non-root certificate with its issuer, and the CSR rules."""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509 import ocsp
from cryptography.x509.oid import NameOID

from voltaro.domain.certificates import (
    CertificateError,
    HashAlgorithm,
    check_csr,
    hash_data,
    parse_hash_data,
)


def _cert(
    subject: str, key: object, issuer: str | None = None, signer: object = None
) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer or subject)]))
        .public_key(key.public_key())  # type: ignore[attr-defined]
        .serial_number(0x00ABCDEF)
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(signer or key, hashes.SHA256())  # type: ignore[arg-type]
    )


@pytest.mark.parametrize(
    "key",
    [ec.generate_private_key(ec.SECP256R1()), rsa.generate_private_key(65537, 2048)],
    ids=["ec", "rsa"],
)
@pytest.mark.parametrize("algorithm", list(HashAlgorithm))
def test_hash_data_matches_ocsp_cert_id(key: object, algorithm: HashAlgorithm) -> None:
    root = _cert("Root", key)
    leaf_key = ec.generate_private_key(ec.SECP384R1())
    leaf = _cert("Leaf", leaf_key, issuer="Root", signer=key)
    digest = {"SHA256": hashes.SHA256(), "SHA384": hashes.SHA384(), "SHA512": hashes.SHA512()}[
        algorithm.value
    ]
    for cert, issuer in ((root, None), (leaf, root)):
        request = ocsp.OCSPRequestBuilder().add_certificate(cert, issuer or cert, digest).build()
        mine = hash_data(cert, issuer, algorithm)
        assert mine.issuer_name_hash == request.issuer_name_hash.hex()
        assert mine.issuer_key_hash == request.issuer_key_hash.hex()
        assert mine.serial_number == "abcdef"  # hex, no leading zeros
    with pytest.raises(CertificateError, match="not self-signed"):
        hash_data(leaf)


def test_parse_hash_data() -> None:
    data = parse_hash_data(
        {
            "hashAlgorithm": "SHA256",
            "issuerNameHash": "AB",
            "issuerKeyHash": "cd",
            "serialNumber": "00ff",
        }
    )
    other = parse_hash_data(
        {
            "hash_algorithm": "sha256",
            "issuer_name_hash": "ab",
            "issuer_key_hash": "CD",
            "serial_number": "FF",
        }
    )
    assert data.same_certificate(other)
    for bad, reason in (
        ({"hashAlgorithm": "MD5"}, "hash algorithm must be one of"),
        (
            {
                "hashAlgorithm": "SHA256",
                "issuerNameHash": "xyz",
                "issuerKeyHash": "a",
                "serialNumber": "1",
            },
            "issuer name hash must be hexadecimal",
        ),
        (
            {
                "hashAlgorithm": "SHA256",
                "issuerNameHash": "a",
                "issuerKeyHash": "a",
                "serialNumber": "1" * 41,
            },
            "serial number is 41 characters",
        ),
    ):
        with pytest.raises(CertificateError, match=reason):
            parse_hash_data(bad)


def _csr(key: object, cn: str = "CP-1", org: str | None = None) -> str:
    names = [x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    if org:
        names.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
    csr = x509.CertificateSigningRequestBuilder().subject_name(x509.Name(names))
    algorithm = None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    return csr.sign(key, algorithm).public_bytes(serialization.Encoding.PEM).decode()  # type: ignore[arg-type]


def test_csr_rules() -> None:
    p256 = ec.generate_private_key(ec.SECP256R1())
    assert check_csr(_csr(p256), charger_id="CP-1").key == "EC secp256r1"
    p384 = ec.generate_private_key(ec.SECP384R1())
    assert check_csr(_csr(p384), charger_id="CP-1").key == "EC secp384r1"
    assert (
        check_csr(_csr(rsa.generate_private_key(65537, 3072)), charger_id="CP-1").key == "RSA 3072"
    )
    # The serial number the charger reported may stand for the id.
    serial = check_csr(_csr(p256, cn="SN-7"), charger_id="CP-1", serial_number="SN-7")
    assert serial.common_name == "SN-7"
    assert (
        check_csr(_csr(p256, org="CPO"), charger_id="CP-1", organization="CPO").organization
        == "CPO"
    )
    refused = {
        "subject CN CP-2 is not the charge point's identity CP-1": (_csr(p256, cn="CP-2"), ""),
        "RSA key of 1024 bits": (_csr(rsa.generate_private_key(65537, 1024)), ""),
        "EC curve secp521r1": (_csr(ec.generate_private_key(ec.SECP521R1())), ""),
        "Ed25519PublicKey keys are not accepted": (_csr(ed25519.Ed25519PrivateKey.generate()), ""),
        "subject O (none) is not 'CPO'": (_csr(p256), "CPO"),
        "not a PEM certificate signing request": ("hello", ""),
    }
    for reason, (pem, org) in refused.items():
        with pytest.raises(CertificateError, match=reason.replace("(", r"\(").replace(")", r"\)")):
            check_csr(pem, charger_id="CP-1", organization=org)
