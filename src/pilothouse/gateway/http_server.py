"""The gateway's HTTP/1.1 server: uvicorn's httptools protocol, plus a disconnect signal.

A request must stop the moment its client leaves (:class:`~pilothouse.gateway.asgi.ClientWatch`).
Plain ASGI reports that only through ``receive()``, which costs the request path a watcher
task per request (about 10 µs of CPU each, 4 % of a proxied request). This protocol also
puts a :class:`DisconnectSignal` in every request's ``scope["extensions"]`` and fires it
from ``connection_lost``, so the request path can register a plain callback instead.
Under any other ASGI server the request path falls back to the watcher task.

Requests run in the gateway's own request/response cycle (:class:`~pilothouse.gateway.
http_cycle.Cycle`): uvicorn's contract and checks at less CPU per request, and a response
whose length is known (``content-length``) written with one write where uvicorn makes two.
HEAD requests, HTTP/1.0, upgrades, requests over ``max_connections`` and uvicorn's access
log keep uvicorn's own cycle (a fixed-length head still held for its body).

And it bounds what a client can make the gateway hold (:class:`HttpLimits`, the gateway's
``http`` settings): a request head over ``max_header_bytes`` or with more than
``max_headers`` fields is answered 431 and the connection closed, so unfinished headers can
never grow memory; a head not complete within ``header_timeout_s`` of its first byte (or of
the connection opening), or a body that stalls for ``body_timeout_s``, is answered 408
(slowloris). Idle keep-alive connections close after ``keep_alive_s``, and beyond
``max_connections`` uvicorn answers 503. Everything else is uvicorn's own.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any
from urllib.parse import unquote

import httptools
import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from pilothouse.deadline import Deadline
from pilothouse.gateway.asgi import DISCONNECT_EXTENSION, DisconnectSignal
from pilothouse.gateway.http_cycle import Cycle
from pilothouse.openai.errors import error_body

_LENGTH = b"\r\ncontent-length: "
log = logging.getLogger("pilothouse.http")


@dataclass(frozen=True, slots=True)
class HttpLimits:
    """What one client may make the gateway hold (``gateway.http``; docs/configuration.md)."""

    max_header_bytes: int = 32 * 1024
    max_headers: int = 100
    header_timeout_s: float = 10.0
    body_timeout_s: float = 30.0


class GatewayHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a disconnect signal and request limits."""

    def __init__(
        self,
        *args: Any,
        limits: HttpLimits | None = None,
        on_refused: Callable[[int], None] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.limits = limits or HttpLimits()
        self._on_refused = on_refused
        self._in_head = True  # reading a request head (not yet complete)
        self._head_bytes = 0
        self._header_count = 0
        # One timer for the connection's phases: head, body, idle keep-alive (:mod:`deadline`).
        self._deadline = Deadline(self.loop, self._timed_out)
        self._idle = False  # between a response and the next request's first byte
        # uvicorn's cycle for every request where a setting needs it (an access log, or a
        # fresh context per task): the gateway's cycle does neither.
        self._uvicorn_cycles = self.access_log or getattr(self.config, "reset_contextvars", False)

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._deadline.arm(self.limits.header_timeout_s)  # a connection that never sends a head

    def data_received(self, data: bytes) -> None:
        deadline = self._deadline
        if self._idle:
            self._idle = False
            deadline.clear()
        reading_body = not self._in_head and deadline.armed
        if self._in_head:
            self._head_bytes += len(data)
            if not deadline.armed:
                deadline.arm(self.limits.header_timeout_s)
        super().data_received(data)
        if self._in_head and self._head_bytes > self.limits.max_header_bytes:
            self._refuse(431, "request header fields too large", "request_header_too_large")
        elif reading_body and deadline.armed:
            deadline.arm(self.limits.body_timeout_s)  # the body is moving: a new deadline

    def on_message_begin(self) -> None:
        # uvicorn's scope, with the disconnect signal in its extensions.
        self.url = b""
        self.expect_100_continue = False
        headers: list[tuple[bytes, bytes]] = []
        self.headers = headers
        self.scope = {
            "type": "http",
            "asgi": {"version": self.asgi_version, "spec_version": "2.3"},
            "http_version": "1.1",
            "server": self.server,
            "client": self.client,
            "scheme": self.scheme,  # type: ignore[typeddict-item]
            "root_path": self.root_path,
            "headers": headers,
            "state": self.app_state.copy(),
            "extensions": {DISCONNECT_EXTENSION: DisconnectSignal(self.loop)},  # type: ignore[dict-item]
        }

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_count += 1
        if self._header_count > self.limits.max_headers:
            self._refuse(431, "too many request header fields", "request_header_too_large")
            return
        # uvicorn's, in this one call: lowercase names, no trailing whitespace in values.
        name = name.lower()
        value = value.rstrip(b" \t")
        if name == b"expect" and value.lower() == b"100-continue":
            self.expect_100_continue = True
        self.headers.append((name, value))

    def on_body(self, body: bytes) -> None:
        cycle = self.cycle
        if isinstance(cycle, Cycle):
            if not cycle.response_complete:
                cycle.add_body(body)
            return
        super().on_body(body)

    def on_message_complete(self) -> None:
        self._deadline.clear()
        self._in_head, self._head_bytes, self._header_count = True, 0, 0
        cycle = self.cycle
        if isinstance(cycle, Cycle):
            if not cycle.response_complete:
                cycle.more_body = False
                cycle.set()
            return
        super().on_message_complete()

    def on_response_complete(self) -> None:
        if self.pipeline or self.transport.is_closing():
            # Rare: uvicorn's own (it starts a pipelined request, or leaves a closing socket).
            super().on_response_complete()
            self._deadline.clear()
            return
        # uvicorn's common case, but the idle keep-alive timeout is the connection's deadline
        # too: uvicorn creates and cancels a timer for it on every request.
        self.server_state.total_requests += 1
        self._deadline.clear()
        self.flow.resume_reading()
        self._idle = True
        self._deadline.arm(self.timeout_keep_alive)

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._deadline.arm(self.limits.body_timeout_s)
        parser = self.parser
        method = parser.get_method()
        limit = self.limit_concurrency
        if (
            method == b"HEAD"
            or self._uvicorn_cycles
            or parser.get_http_version() != "1.1"
            or parser.should_upgrade()
            or (limit is not None and (len(self.connections) >= limit or len(self.tasks) >= limit))
        ):
            self._uvicorn_headers_complete()
            return
        # uvicorn's steps for the common case, with the gateway's own cycle.
        scope = self.scope
        scope["method"] = method.decode("ascii")
        url = httptools.parse_url(self.url)
        raw_path = url.path
        path = raw_path.decode("ascii")
        if "%" in path:
            path = unquote(path)
        root = self.root_path
        scope["path"] = root + path
        scope["raw_path"] = root.encode("ascii") + raw_path if root else raw_path
        scope["query_string"] = url.query or b""
        cycle = Cycle(
            scope,  # type: ignore[arg-type]
            self.transport,
            self.flow,
            self.server_state.default_headers,
            self.expect_100_continue,
            self.on_response_complete,
        )
        if not parser.should_keep_alive():
            cycle.keep_alive = False
        previous = self.cycle
        self.cycle = cycle  # type: ignore[assignment]
        if previous is None or previous.response_complete:
            task = self.loop.create_task(cycle.run_asgi(self.app))
            task.add_done_callback(self.tasks.discard)
            self.tasks.add(task)
        else:  # pipelined: it waits for the one before (uvicorn starts it)
            self.flow.pause_reading()
            self.pipeline.appendleft((cycle, self.app))  # type: ignore[arg-type]

    def _uvicorn_headers_complete(self) -> None:
        """uvicorn's own cycle (HEAD, HTTP/1.0, upgrades, over the connection limit, its
        access log), its fixed-length heads held by :class:`_HeadHolder`."""
        previous = self.cycle
        super().on_headers_complete()
        cycle = self.cycle
        # Not an upgrade, nor HEAD (uvicorn writes no body for HEAD: nothing would flush).
        if cycle is not None and cycle is not previous and cycle.scope["method"] != "HEAD":
            cycle.transport = _HeadHolder(self.transport)  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self._deadline.cancel()
        cycle = self.cycle
        super().connection_lost(exc)
        if cycle is not None and not cycle.response_complete:
            signal = cycle.scope.get("extensions", {}).get(DISCONNECT_EXTENSION)
            if isinstance(signal, DisconnectSignal):
                signal.fire()

    def _timed_out(self) -> None:
        if self._idle:  # an idle keep-alive connection: closed without a word, as uvicorn does
            if not self.transport.is_closing():
                self.transport.close()
            return
        what = "headers" if self._in_head else "body"
        self._refuse(408, f"the request {what} did not arrive in time", "request_timeout")

    def _refuse(self, status: int, message: str, code: str) -> None:
        """Answer ``status`` and close, unless a response already started (then just close)."""
        self._deadline.clear()
        cycle = self.cycle
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        if self._on_refused is not None:
            self._on_refused(status)
        log.info("refused a request from %s: %s %s", self.client, status, message)
        if cycle is None or not cycle.response_started:
            body = error_body(message, "invalid_request_error", code=code)
            reason = _REASONS[status]
            transport.write(
                f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
                f"content-length: {len(body)}\r\nconnection: close\r\n\r\n".encode()
                + body
            )
        transport.close()


_REASONS = {408: "Request Timeout", 431: "Request Header Fields Too Large"}


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


def server_config(
    app: Any,
    host: str,
    port: int,
    limits: HttpLimits | None = None,
    *,
    keep_alive_s: float = 5.0,
    max_connections: int | None = None,
    on_refused: Callable[[int], None] | None = None,
    **options: Any,
) -> uvicorn.Config:
    """uvicorn's settings for the gateway (``options`` override them; tests use this too)."""
    settings: dict[str, Any] = {
        "http": partial(GatewayHttpProtocol, limits=limits or HttpLimits(), on_refused=on_refused),
        "timeout_keep_alive": keep_alive_s,
        "limit_concurrency": max_connections,
        "log_level": "warning",
        "access_log": False,
        "lifespan": "on",
        "proxy_headers": False,  # loopback by default; X-Forwarded-* parsing costs every request
        "server_header": False,  # one header less to validate and send on every response
    }
    return uvicorn.Config(app, host=host, port=port, **(settings | options))
