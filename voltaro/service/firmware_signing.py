"""Firmware signatures for SignedUpdateFirmware (1.6 security extension).

The charger checks ``firmware.signature`` (base64) over the image it downloaded with the
public key of ``firmware.signingCertificate`` (PEM). The whitepaper leaves the scheme to
the manufacturer's certificate; Voltaro computes and checks the common one: SHA-256 over
the whole image, signed with RSA (PKCS#1 v1.5) or ECDSA (DER signature), chosen by the
key's type. The image is read in pieces, never whole into memory.

Voltaro signs only images it serves itself (it has the bytes) and never keeps the
private key: it is used for one signature and dropped (docs/firmware.md).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils

CHUNK = 1024 * 1024


class SigningError(ValueError):
    """A key, certificate or signature that cannot be used; the message says why."""


def _digest(path: Path) -> bytes:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.digest()


def load_certificate(pem: str) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(pem.encode())
    except ValueError as exc:
        raise SigningError(f"the signing certificate is not a PEM certificate ({exc})") from None


def sign_image(path: Path, private_key_pem: str, certificate_pem: str) -> str:
    """The base64 signature of the image at ``path``; the key must belong to the
    certificate (a signature the charger cannot check is refused here, not there)."""
    try:
        key = serialization.load_pem_private_key(private_key_pem.encode(), password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise SigningError(
            "the signing key is not an unencrypted PEM private key (RSA or EC)"
        ) from None
    digest = _digest(path)
    prehashed = utils.Prehashed(hashes.SHA256())
    if isinstance(key, rsa.RSAPrivateKey):
        raw = key.sign(digest, padding.PKCS1v15(), prehashed)
    elif isinstance(key, ec.EllipticCurvePrivateKey):
        raw = key.sign(digest, ec.ECDSA(prehashed))
    else:
        raise SigningError("the signing key must be RSA or EC")
    signature = base64.b64encode(raw).decode()
    if not verify_image(path, certificate_pem, signature):
        raise SigningError("the signing key does not belong to the signing certificate")
    return signature


def verify_image(path: Path, certificate_pem: str, signature: str) -> bool:
    """Whether ``signature`` (base64) is the certificate's key's signature of the image."""
    public = load_certificate(certificate_pem).public_key()
    try:
        raw = base64.b64decode(signature, validate=True)
    except (binascii.Error, ValueError):
        return False
    digest = _digest(path)
    prehashed = utils.Prehashed(hashes.SHA256())
    try:
        if isinstance(public, rsa.RSAPublicKey):
            public.verify(raw, digest, padding.PKCS1v15(), prehashed)
        elif isinstance(public, ec.EllipticCurvePublicKey):
            public.verify(raw, digest, ec.ECDSA(prehashed))
        else:
            raise SigningError("the signing certificate's key must be RSA or EC")
    except InvalidSignature:
        return False
    return True
