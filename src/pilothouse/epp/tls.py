"""The picker's TLS identity: a certificate given as files, or one generated at start.

As in the Gateway API Inference Extension's reference picker, ``--cert-path`` names a
directory holding ``tls.crt`` and ``tls.key`` (the layout of a ``kubernetes.io/tls`` Secret
mounted as a volume); without it a self-signed certificate is generated in memory at every
start. Gateways connect to the picker with TLS but without verifying it (kgateway's
generated cluster has an empty validation context, GAIE's Istio chart sets
``insecureSkipVerify``), so the generated certificate is enough for the data path; give
files when the gateway should verify the picker.

Differences from the reference, on purpose: the key is ECDSA P-256 rather than RSA 4096
(generated in milliseconds instead of seconds, accepted by Envoy and gRPC alike), and the
certificate names ``localhost``, the loopback addresses and the bind host as subject
alternative names, so a client that *does* verify (a test, ``grpcurl --cacert``) can.

Files are checked here, with a :class:`~pilothouse.errors.ConfigError` naming the file,
rather than left to gRPC, which only reports that the server could not start.
"""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from pilothouse.errors import ConfigError

CERT_FILE = "tls.crt"
KEY_FILE = "tls.key"
ORGANIZATION = "pilothouse endpoint picker"
VALIDITY = datetime.timedelta(days=3650)  # ten years, as the reference picker
_LOOPBACK = ("localhost", "127.0.0.1", "::1")


@dataclass(frozen=True, slots=True)
class CertificatePair:
    """A PEM certificate chain and its private key; ``generated`` when made at start."""

    cert_pem: bytes
    key_pem: bytes
    generated: bool = False


def self_signed(hosts: Iterable[str] = ()) -> CertificatePair:
    """A fresh self-signed server certificate for ``hosts`` plus the loopback names."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANIZATION)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))  # tolerate clock skew
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.SubjectAlternativeName(_alt_names(hosts)), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return CertificatePair(cert.public_bytes(serialization.Encoding.PEM), key_pem, True)


def _alt_names(hosts: Iterable[str]) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = []
    for host in dict.fromkeys((*_LOOPBACK, *hosts)):
        if host in ("", "0.0.0.0", "::"):  # wildcard binds name no host
            continue
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host.strip("[]"))))
        except ValueError:
            names.append(x509.DNSName(host))
    return names


def load_pair(cert_dir: Path) -> CertificatePair:
    """``tls.crt`` and ``tls.key`` from ``cert_dir``, checked to parse and to match."""
    if not cert_dir.is_dir():
        raise ConfigError(
            f"{cert_dir} is not a directory (it must hold {CERT_FILE} and {KEY_FILE})",
            path="--cert-path",
        )
    cert_pem, key_pem = _read(cert_dir / CERT_FILE), _read(cert_dir / KEY_FILE)
    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
    except ValueError as exc:
        raise _bad(cert_dir / CERT_FILE, "is not a PEM certificate", exc) from exc
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise _bad(cert_dir / KEY_FILE, "is not an unencrypted PEM private key", exc) from exc
    if key.public_key() != cert.public_key():
        raise ConfigError(
            f"{cert_dir / KEY_FILE} is not the private key of {cert_dir / CERT_FILE}",
            path="--cert-path",
        )
    return CertificatePair(cert_pem, key_pem)


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror or exc}", "--cert-path") from exc


def _bad(path: Path, what: str, exc: Exception) -> ConfigError:
    return ConfigError(f"{path} {what} ({exc})", path="--cert-path")
