"""The picker's certificate: generated at start, or loaded (and checked) from --cert-path."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from pathlib import Path

import pytest

pytest.importorskip("cryptography", reason="the epp extra (cryptography) is not installed")

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from pilothouse.epp.tls import CERT_FILE, KEY_FILE, CertificatePair, load_pair, self_signed
from pilothouse.errors import ConfigError


def _write(directory: Path, pair: CertificatePair) -> Path:
    directory.mkdir(exist_ok=True)
    (directory / CERT_FILE).write_bytes(pair.cert_pem)
    (directory / KEY_FILE).write_bytes(pair.key_pem)
    return directory


def _alt_names(pair: CertificatePair) -> tuple[set[str], set[str]]:
    cert = x509.load_pem_x509_certificate(pair.cert_pem)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    ips = {str(ip) for ip in san.get_values_for_type(x509.IPAddress)}
    return set(san.get_values_for_type(x509.DNSName)), ips


def test_a_generated_certificate_is_a_server_certificate_for_its_key() -> None:
    pair = self_signed()
    cert = x509.load_pem_x509_certificate(pair.cert_pem)
    key = serialization.load_pem_private_key(pair.key_pem, password=None)
    assert pair.generated
    assert key.public_key() == cert.public_key()
    assert cert.issuer == cert.subject  # self-signed
    usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert x509.oid.ExtendedKeyUsageOID.SERVER_AUTH in usage
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False


def test_a_generated_certificate_names_loopback_and_the_bind_host() -> None:
    names, ips = _alt_names(self_signed(["epp.inference.svc", "10.0.0.7", "0.0.0.0"]))
    assert names == {"localhost", "epp.inference.svc"}
    assert ips == {"127.0.0.1", "::1", "10.0.0.7"}  # the wildcard bind names no host
    assert all(ipaddress.ip_address(ip) for ip in ips)


def test_every_start_generates_a_new_key() -> None:
    assert self_signed().key_pem != self_signed().key_pem


def test_files_in_cert_path_load_as_they_are(tmp_path: Path) -> None:
    pair = self_signed(["picker.example"])
    loaded = load_pair(_write(tmp_path / "certs", pair))
    assert (loaded.cert_pem, loaded.key_pem) == (pair.cert_pem, pair.key_pem)
    assert not loaded.generated


def _mismatched(tmp: Path) -> Path:
    directory = _write(tmp / "certs", self_signed())
    (directory / KEY_FILE).write_bytes(self_signed().key_pem)
    return directory


Make = Callable[[Path], Path]


def _garbage(name: str) -> Make:
    def make(tmp: Path) -> Path:
        directory = _write(tmp / "certs", self_signed())
        (directory / name).write_text("not PEM\n")
        return directory

    return make


def _missing(name: str) -> Make:
    def make(tmp: Path) -> Path:
        directory = _write(tmp / "certs", self_signed())
        (directory / name).unlink()
        return directory

    return make


@pytest.mark.parametrize(
    ("make", "message"),
    [
        pytest.param(lambda tmp: tmp / "absent", "is not a directory", id="no-directory"),
        pytest.param(
            lambda tmp: _write(tmp / "c", self_signed()) / CERT_FILE,
            "is not a directory",
            id="a-file-not-a-directory",
        ),
        pytest.param(_missing(CERT_FILE), f"cannot read .*{CERT_FILE}", id="no-cert"),
        pytest.param(_missing(KEY_FILE), f"cannot read .*{KEY_FILE}", id="no-key"),
        pytest.param(_garbage(CERT_FILE), "is not a PEM certificate", id="bad-cert"),
        pytest.param(_garbage(KEY_FILE), "is not an unencrypted PEM private key", id="bad-key"),
        pytest.param(_mismatched, "is not the private key of", id="key-of-another-cert"),
    ],
)
def test_bad_cert_path_files_are_a_config_error_naming_the_file(
    tmp_path: Path, make: Make, message: str
) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        load_pair(make(tmp_path))
    assert caught.value.path == "--cert-path"


# -- the command line: reference-style flags, bad files refused before listening ----------


def _cli(args: list[str], tmp: Path) -> tuple[int, str]:
    from click.testing import CliRunner

    from pilothouse.epp.cli import epp_command

    (tmp / "endpoints.yaml").write_text("[]\n")
    result = CliRunner().invoke(
        epp_command, ["--endpoints-file", str(tmp / "endpoints.yaml"), *args]
    )
    return result.exit_code, result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param(["--cert-path", "/nonexistent/certs"], "is not a directory", id="missing"),
        pytest.param(["--plaintext", "--cert-path", "."], "--cert-path needs TLS", id="plain"),
        pytest.param(["--secure-serving=false", "--cert-path", "."], "needs TLS", id="false"),
        pytest.param(["--secure-serving=maybe"], "is not a valid boolean", id="not-a-bool"),
    ],
)
def test_bad_tls_flags_are_usage_errors_without_a_traceback(
    tmp_path: Path, args: list[str], message: str
) -> None:
    code, output = _cli(args, tmp_path)
    assert code == 2
    assert message in output
    assert "Traceback" not in output


def test_the_tls_flags_reach_the_settings(tmp_path: Path) -> None:
    pytest.importorskip("grpc")
    from pilothouse.epp import cli

    directory = _write(tmp_path / "certs", self_signed())
    seen = {}
    for name, args in {
        "default": [],
        "bare-flag": ["--secure-serving"],
        "go-style-false": ["--secure-serving=false"],
        "plaintext": ["--plaintext"],
        "cert-path": ["--cert-path", str(directory)],
    }.items():
        params = cli.epp_command.make_context("epp", ["--endpoints-file", "x", *args]).params
        secure, cert_path = cli._tls(params)
        seen[name] = (secure, cert_path)
    assert seen == {
        "default": (True, None),
        "bare-flag": (True, None),
        "go-style-false": (False, None),
        "plaintext": (False, None),
        "cert-path": (True, directory),
    }
