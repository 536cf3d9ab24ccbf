"""Who may drive the admin API (``/admin/*``): the one check every admin route makes.

A gateway's admin routes start replicas and load adapters, so they must not be reachable
by a web page the operator happens to open, nor through DNS rebinding:

- **credential**: ``gateway.admin.api_key`` (else ``gateway.api_key``) as
  ``Authorization: Bearer …`` when one is set; without one, only loopback clients are
  answered, and a gateway that listens beyond loopback refuses the admin API altogether
  (403 telling the operator to set ``gateway.admin.api_key``);
- **Host**: the request's ``Host`` must name this gateway (``localhost``, a loopback
  address, the bind address, or one of ``gateway.admin.allowed_hosts``) — a rebound DNS
  name is refused;
- **Origin**: a request that carries an ``Origin`` (every browser request that could be a
  cross-site one) must come from one of ``gateway.admin.allowed_origins`` (none by
  default): a page's ``text/plain`` POST, which needs no CORS preflight, is refused;
- **content type**: a request with a body must be ``application/json`` (415 otherwise).
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Mapping

from pilothouse.config.fleet import GatewaySpec
from pilothouse.errors import RequestError, Unauthorized

_LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})


class AdminForbidden(RequestError):
    status = 403
    error_type = "permission_error"


class UnsupportedMediaType(RequestError):
    status = 415
    error_type = "invalid_request_error"


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1, or ::ffff:127.x (an IPv4 client of a dual-stack socket)."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


def check_admin(
    settings: GatewaySpec, client: str, headers: Mapping[str, str], method: str
) -> None:
    """Raise the error answering an admin request that may not proceed (see above)."""
    credential = settings.admin.api_key or settings.api_key
    _check_origin(settings, headers.get("origin"))
    _check_host(settings, headers.get("host", ""))
    if credential is None:
        if not is_loopback(settings.host) and settings.host != "localhost":
            raise AdminForbidden(
                f"the admin API is off: the gateway listens on {settings.host} and has no "
                "admin credential; set gateway.admin.api_key"
            )
        if not is_loopback(client):
            raise AdminForbidden("the admin endpoint answers loopback clients only")
    else:
        _check_credential(credential, headers.get("authorization", ""))
    if method in ("PUT", "POST", "PATCH"):
        content_type = headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if content_type != "application/json":
            raise UnsupportedMediaType(
                f"the admin API takes application/json, not {content_type or 'no content type'}"
            )


def _check_origin(settings: GatewaySpec, origin: str | None) -> None:
    if origin is not None and origin not in settings.admin.allowed_origins:
        raise AdminForbidden(
            f"requests from the web origin {origin!r} may not use the admin API "
            "(gateway.admin.allowed_origins)"
        )


def _check_host(settings: GatewaySpec, host_header: str) -> None:
    name = _host_name(host_header)
    allowed = _LOOPBACK_NAMES | {settings.host} | set(settings.admin.allowed_hosts)
    if name not in allowed and not is_loopback(name):
        raise AdminForbidden(f"Host {name!r} is not this gateway's (gateway.admin.allowed_hosts)")


def _host_name(host_header: str) -> str:
    """``example.com:8000`` → ``example.com``; ``[::1]:8000`` → ``::1``."""
    value = host_header.strip().lower()
    if value.startswith("["):
        return value[1:].split("]", 1)[0]
    if value.count(":") == 1:
        return value.split(":", 1)[0]
    return value


def _check_credential(expected: str, authorization: str) -> None:
    supplied = b""
    raw = authorization.encode("latin-1", "replace")
    if raw[:7].lower() == b"bearer ":
        supplied = raw[7:].strip()
    if not hmac.compare_digest(supplied, expected.encode()):
        raise Unauthorized(
            "missing or invalid admin credential: send 'Authorization: Bearer <key>'",
            code="invalid_api_key",
        )


def check_browser(settings: GatewaySpec, headers: Mapping[str, str], scheme: str) -> str | None:
    """Why a web console request may not proceed, or None: its ``Host`` must name this
    gateway (as for the admin API) and an ``Origin`` it carries must be the console's own
    (``scheme://host``) or one of ``gateway.admin.allowed_origins``."""
    host = headers.get("host", "")
    try:
        _check_host(settings, host)
    except AdminForbidden as exc:
        return exc.message
    origin = headers.get("origin")
    own = f"{scheme}://{host}"
    if origin is not None and origin != own and origin not in settings.admin.allowed_origins:
        return f"requests from the web origin {origin!r} may not use the console"
    return None
