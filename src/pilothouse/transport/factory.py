"""Build the production transport by name: the gateway's ``upstream_client`` setting.

Kinds map to builders in a table (no if/elif over names); each builder imports its client
only when chosen, so ``import pilothouse.transport`` stays light.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from pilothouse.errors import ConfigError
from pilothouse.transport import Transport


class ClosableTransport(Transport, Protocol):
    """A transport its owner shuts down: ``aclose`` closes the pooled connections."""

    async def aclose(self) -> None: ...


@dataclass(frozen=True, slots=True)
class TransportSettings:
    """Limits shared by every kind (``GatewaySpec`` holds the same fields)."""

    connect_timeout_s: float = 5.0
    headers_timeout_s: float | None = 600.0
    """Until the response's headers, unless ``UpstreamRequest.timeout_s`` says otherwise."""
    read_timeout_s: float | None = 600.0
    """Of silence while a body is being read (a stalled stream)."""
    max_idle_per_endpoint: int = 64
    """Idle keep-alive connections kept per endpoint (``http1`` only)."""


def _http1(settings: TransportSettings) -> ClosableTransport:
    from pilothouse.transport.http1 import Http1Transport

    return Http1Transport(
        connect_timeout_s=settings.connect_timeout_s,
        headers_timeout_s=settings.headers_timeout_s,
        read_timeout_s=settings.read_timeout_s,
        max_idle_per_endpoint=settings.max_idle_per_endpoint,
    )


def _aiohttp(settings: TransportSettings) -> ClosableTransport:
    from pilothouse.transport.aiohttp_transport import AiohttpTransport

    return AiohttpTransport(
        connect_timeout_s=settings.connect_timeout_s,
        headers_timeout_s=settings.headers_timeout_s,
        read_timeout_s=settings.read_timeout_s,
    )


TRANSPORT_KINDS: Mapping[str, Callable[[TransportSettings], ClosableTransport]] = {
    "http1": _http1,
    "aiohttp": _aiohttp,
}
"""``upstream_client`` values: ``http1`` (the lean default) and ``aiohttp`` (the fallback)."""


def create_transport(
    kind: str = "http1", settings: TransportSettings | None = None
) -> ClosableTransport:
    """A new transport of ``kind``; call it inside the event loop that will use it."""
    builder = TRANSPORT_KINDS.get(kind)
    if builder is None:
        known = ", ".join(TRANSPORT_KINDS)
        raise ConfigError(f"unknown upstream client {kind!r} (known: {known})", "upstream_client")
    return builder(settings or TransportSettings())
