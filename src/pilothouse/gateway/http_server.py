"""The gateway's HTTP/1.1 server: uvicorn's httptools protocol, plus a disconnect signal.

A request must stop the moment its client leaves (:class:`~pilothouse.gateway.asgi.ClientWatch`).
Plain ASGI reports that only through ``receive()``, which costs the request path a watcher
task per request (about 10 µs of CPU each, 4 % of a proxied request). This protocol also
puts a :class:`DisconnectSignal` in every request's ``scope["extensions"]`` and fires it
from ``connection_lost``, so the request path can register a plain callback instead.
Under any other ASGI server the request path falls back to the watcher task.

It also writes a response whose length is known (``content-length``) with one write: uvicorn
writes the status line and headers as soon as the app sends ``http.response.start``, and the
body with the next message, two send calls on the socket where one will do. Streamed
responses (chunked) still send their headers at once. Everything else is uvicorn's own.
"""

from __future__ import annotations

import asyncio
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from pilothouse.gateway.asgi import DISCONNECT_EXTENSION, DisconnectSignal

_LENGTH = b"\r\ncontent-length: "


class GatewayHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol that fires the current request's disconnect signal."""

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.scope["extensions"] = {DISCONNECT_EXTENSION: DisconnectSignal()}  # type: ignore[dict-item]

    def on_headers_complete(self) -> None:
        previous = self.cycle
        super().on_headers_complete()
        cycle = self.cycle
        # Not an upgrade, nor HEAD (uvicorn writes no body for HEAD: nothing would flush).
        if cycle is not None and cycle is not previous and cycle.scope["method"] != "HEAD":
            cycle.transport = _HeadHolder(self.transport)  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        cycle = self.cycle
        super().connection_lost(exc)
        if cycle is not None and not cycle.response_complete:
            signal = cycle.scope.get("extensions", {}).get(DISCONNECT_EXTENSION)
            if isinstance(signal, DisconnectSignal):
                signal.fire()


class _HeadHolder:
    """One response's view of the socket: holds a fixed-length response's head until its
    body is written, then writes both at once. Only what uvicorn's cycle calls is here."""

    __slots__ = ("_head", "_started", "_transport")

    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        self._head: bytes | None = None
        self._started = False

    def write(self, data: bytes) -> None:
        head = self._head
        if head is not None:
            self._head = None
            self._transport.write(head + data)
        elif not self._started:
            self._started = True
            if _LENGTH in data:  # the first write of a response is its head
                self._head = data
            else:
                self._transport.write(data)
        else:
            self._transport.write(data)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def flush(self) -> None:
        head, self._head = self._head, None
        if head is not None:
            self._transport.write(head)


def server_config(app: Any, host: str, port: int, **options: Any) -> uvicorn.Config:
    """uvicorn's settings for the gateway (``options`` override them; tests use this too)."""
    settings: dict[str, Any] = {
        "http": GatewayHttpProtocol,
        "log_level": "warning",
        "access_log": False,
        "lifespan": "on",
        "proxy_headers": False,  # loopback by default; X-Forwarded-* parsing costs every request
        "server_header": False,  # one header less to validate and send on every response
    }
    return uvicorn.Config(app, host=host, port=port, **(settings | options))
