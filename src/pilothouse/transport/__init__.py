"""The upstream leg behind one verb: send a request to an endpoint, get its response.

Everything that talks HTTP to an engine on the request path goes through a
:class:`Transport`, so retries, failover and mid-stream failures are unit-testable with
:class:`pilothouse.testing.FakeTransport` and no process::

    response = await transport.send("10.0.0.7:8000", UpstreamRequest("/v1/chat/completions", body))
    try:
        async for chunk in response.chunks():   # bytes as they arrive, never re-encoded
            ...
    finally:
        await response.aclose()                  # abort when unread: the engine stops

A transport raises only :class:`~pilothouse.errors.UpstreamError` (connection refused or
reset, a broken stream) and :class:`~pilothouse.errors.UpstreamTimeout` (no answer in
time): callers never see a library's exceptions. Closing a response before its body has
been read closes the connection, which is how an engine learns that its client left
(vLLM and llama.cpp abort a request whose connection closes).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Protocol

from pilothouse.values import value


@value
class UpstreamRequest:
    """One HTTP request to an engine (``POST`` with a JSON body unless told otherwise)."""

    path: str
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = ()
    method: str = "POST"
    content_type: str = "application/json"
    timeout_s: float | None = None
    """Time allowed until the response's headers arrive (``None``: the transport's own)."""


class UpstreamResponse(Protocol):
    """An engine's answer: status and headers at once, the body read or streamed once."""

    @property
    def status(self) -> int: ...

    @property
    def headers(self) -> Mapping[str, str]:
        """Response headers, names in lower case."""
        ...

    def chunks(self) -> AsyncIterator[bytes]:
        """The body as it arrives; raises ``UpstreamError`` if the stream breaks."""
        ...

    async def read(self) -> bytes:
        """The whole body; raises ``UpstreamError`` if it breaks off."""
        ...

    async def aclose(self) -> None:
        """Release the response; an unread body closes (aborts) the connection."""
        ...


class Transport(Protocol):
    """Sends requests to engines (see the module docstring)."""

    async def send(self, address: str, request: UpstreamRequest) -> UpstreamResponse:
        """Send ``request`` to ``address`` (``host:port``); return once headers arrived."""
        ...


# The factory imports the protocols above, so it comes after them.
from pilothouse.transport.factory import (  # noqa: E402
    TRANSPORT_KINDS,
    ClosableTransport,
    TransportSettings,
    create_transport,
)

__all__ = [
    "TRANSPORT_KINDS",
    "ClosableTransport",
    "Transport",
    "TransportSettings",
    "UpstreamRequest",
    "UpstreamResponse",
    "create_transport",
]
