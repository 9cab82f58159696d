"""Who signs chargers' certificates (SignCertificate, 1.6 security whitepaper ed. 3 A02/A03):
a local CA managed with `cryptography` (`voltaro ca init`), or an external CA behind a
hook command (the CSR on stdin, the PEM chain on stdout). The CA's private key is read
when a certificate is signed and never logged, printed or kept in memory longer.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import trio
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from voltaro.domain.certificates import CertificateError, load_certificates
from voltaro.settings import Settings

log = logging.getLogger(__name__)


class CaError(Exception):
    """The CA could not sign (or be created); the message says why in one line."""


@dataclass(frozen=True, slots=True)
class Signed:
    chain: str  # PEM: the charger's certificate first, then any sub-CA certificates
    certificate: x509.Certificate


class Authority(Protocol):
    name: str

    async def sign(self, csr_pem: str) -> Signed: ...


def _checked_chain(pem: str, csr: x509.CertificateSigningRequest) -> Signed:
    """The chain must start with a certificate for the CSR's own key."""
    try:
        found = load_certificates(pem)
    except CertificateError as exc:
        raise CaError(f"the CA returned no PEM certificate ({exc})") from None
    leaf = found[0]
    if leaf.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    ) != csr.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    ):
        raise CaError("the CA returned a certificate for another key than the CSR's")
    return Signed(chain=pem, certificate=leaf)


class LocalCA:
    """Signs with the CA certificate and key in two PEM files (read at each signing, so a
    renewed CA is used without a restart)."""

    name = "local CA"

    def __init__(self, certfile: str, keyfile: str, days: int) -> None:
        self.certfile = certfile
        self.keyfile = keyfile
        self.days = days

    async def sign(self, csr_pem: str) -> Signed:
        return await trio.to_thread.run_sync(self._sign, csr_pem)

    def _sign(self, csr_pem: str) -> Signed:
        try:
            ca_cert = x509.load_pem_x509_certificate(Path(self.certfile).read_bytes())
        except (OSError, ValueError) as exc:
            raise CaError(f"cannot read the CA certificate {self.certfile}: {exc}") from None
        try:
            ca_key = serialization.load_pem_private_key(
                Path(self.keyfile).read_bytes(), password=None
            )
        except (OSError, ValueError, TypeError) as exc:
            # The reason only: never a byte of the key file.
            reason = exc.strerror if isinstance(exc, OSError) else type(exc).__name__
            raise CaError(f"cannot use the CA key {self.keyfile}: {reason}") from None
        if not isinstance(ca_key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
            raise CaError(f"the CA key {self.keyfile} is not an EC or RSA key")
        csr = x509.load_pem_x509_csr(csr_pem.encode())
        now = dt.datetime.now(dt.UTC)
        not_after = min(now + dt.timedelta(days=self.days), ca_cert.not_valid_after_utc)
        if not_after <= now:
            raise CaError(f"the CA certificate {self.certfile} has expired")
        key = csr.public_key()
        if not isinstance(key, ec.EllipticCurvePublicKey | rsa.RSAPublicKey):
            raise CaError("the CSR's key is neither EC nor RSA")
        is_ec = isinstance(key, ec.EllipticCurvePublicKey)
        certificate = (
            x509.CertificateBuilder()
            .subject_name(csr.subject)
            .issuer_name(ca_cert.subject)
            .public_key(key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))  # chargers' clocks drift
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=not is_ec,
                    data_encipherment=False,
                    key_agreement=is_ec,
                    key_cert_sign=False,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            # The charger presents it as its TLS client certificate (profile 3).
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                critical=False,
            )
            .sign(ca_key, hashes.SHA256())
        )
        chain = certificate.public_bytes(serialization.Encoding.PEM)
        if ca_cert.issuer != ca_cert.subject:
            # A sub-CA: the charger needs it to build the path to the root it trusts.
            chain += ca_cert.public_bytes(serialization.Encoding.PEM)
        return Signed(chain=chain.decode(), certificate=certificate)


class HookCA:
    """An external CA: ``command`` gets the CSR (PEM) on stdin and prints the signed
    chain (PEM) on stdout, exit status 0, within ``timeout`` seconds."""

    name = "CA hook"

    def __init__(self, command: str, timeout: float) -> None:
        self.command = command
        self.timeout = timeout

    async def sign(self, csr_pem: str) -> Signed:
        argv = shlex.split(self.command)
        try:
            with trio.fail_after(self.timeout):
                # Cancelled at the timeout: run_process kills the hook.
                done = await trio.run_process(
                    argv,
                    stdin=csr_pem.encode(),
                    capture_stdout=True,
                    capture_stderr=True,
                    check=False,
                )
        except trio.TooSlowError:
            raise CaError(f"the CA hook did not answer within {self.timeout:g} s") from None
        except OSError as exc:
            raise CaError(f"cannot run the CA hook {argv[0]!r}: {exc.strerror}") from None
        if done.returncode != 0:
            last = (done.stderr.decode(errors="replace").strip().splitlines() or [""])[-1]
            raise CaError(f"the CA hook exited with status {done.returncode}: {last[:200]}")
        return _checked_chain(
            done.stdout.decode(errors="replace"), x509.load_pem_x509_csr(csr_pem.encode())
        )


def authority_from_settings(settings: Settings) -> Authority | None:
    if settings.ca_hook:
        return HookCA(settings.ca_hook, settings.ca_hook_timeout)
    if settings.ca_certfile and settings.ca_keyfile:
        return LocalCA(settings.ca_certfile, settings.ca_keyfile, settings.certificate_days)
    return None


def create_ca(
    directory: str, *, common_name: str, organization: str = "", days: int = 3650
) -> tuple[Path, Path]:
    """A CA for `voltaro ca init`: an EC P-256 key (written mode 0600 before any byte of
    it) and a self-signed certificate. Never overwrites a file."""
    folder = Path(directory)
    cert_path, key_path = folder / "ca.pem", folder / "ca.key"
    for path in (cert_path, key_path):
        if path.exists():
            raise CaError(f"{path} exists; not overwritten")
    if days < 1:
        raise CaError("--days must be at least 1")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CaError(f"cannot create {folder}: {exc.strerror}") from None
    key = ec.generate_private_key(ec.SECP256R1())
    attributes = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if organization:
        attributes.insert(0, x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    name = x509.Name(attributes)
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_bytes = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    try:
        # O_EXCL: never follow or replace a file someone put there; 0600 from the start.
        fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(key_bytes)
        fd = os.open(cert_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        with os.fdopen(fd, "wb") as handle:
            handle.write(certificate.public_bytes(serialization.Encoding.PEM))
    except OSError as exc:
        raise CaError(f"cannot write the CA files in {folder}: {exc.strerror}") from None
    return cert_path, key_path


def check_local_ca(settings: Settings) -> None:
    """At start-up: the local CA's files can be used (a bad file is one line naming the
    setting, not a failure at the first SignCertificate). Says nothing of the key."""
    if not settings.ca_certfile:
        return
    try:
        cert = x509.load_pem_x509_certificate(Path(settings.ca_certfile).read_bytes())
    except (OSError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not a PEM certificate"
        raise CaError(
            f"cannot use the CA certificate {settings.ca_certfile} (setting ca_certfile): {reason}"
        ) from None
    try:
        key = serialization.load_pem_private_key(
            Path(settings.ca_keyfile).read_bytes(), password=None
        )
    except (OSError, ValueError, TypeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not an unencrypted PEM private key"
        raise CaError(
            f"cannot use the CA key {settings.ca_keyfile} (setting ca_keyfile): {reason}"
        ) from None
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    if key.public_key().public_bytes(
        serialization.Encoding.DER, spki
    ) != cert.public_key().public_bytes(serialization.Encoding.DER, spki):
        raise CaError(
            f"the CA key {settings.ca_keyfile} does not belong to the CA certificate "
            f"{settings.ca_certfile} (settings ca_keyfile, ca_certfile)"
        )
