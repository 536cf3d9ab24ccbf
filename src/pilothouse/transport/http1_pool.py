"""Idle keep-alive connections to one endpoint, and the request head written on them."""

from __future__ import annotations

import asyncio

from pilothouse.errors import UpstreamError, UpstreamTimeout
from pilothouse.transport import UpstreamRequest
from pilothouse.transport.http1_conn import Http1Connection

_CONNECT = "upstream_connect"
"""``code`` of the errors raised when no connection could be opened (nothing was sent)."""


def _check(*texts: str) -> None:
    for text in texts:
        if "\r" in text or "\n" in text or "\0" in text:
            raise UpstreamError(f"a request line or header holds CR, LF or NUL: {text[:80]!r}")


def split_address(address: str) -> tuple[str, int]:
    """``host:port`` or ``[v6]:port`` to ``(host, port)``; anything else is an error."""
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise UpstreamError(f"bad endpoint address {address!r} (want host:port)", code=_CONNECT)
    return host.removeprefix("[").removesuffix("]"), int(port)


def encode_head(host_header: str, request: UpstreamRequest) -> bytes:
    """The request line and headers; CR, LF and NUL are refused (no header injection)."""
    _check(request.method, request.path, request.content_type)
    lines = [
        f"{request.method} {request.path} HTTP/1.1\r\nhost: {host_header}\r\n"
        f"content-length: {len(request.body)}\r\n"
    ]
    if request.content_type:
        lines.append(f"content-type: {request.content_type}\r\n")
    for name, value in request.headers:
        _check(name, value)
        lines.append(f"{name}: {value}\r\n")
    lines.append("\r\n")
    try:
        return "".join(lines).encode("latin-1")
    except UnicodeEncodeError as exc:
        raise UpstreamError("a request header is not latin-1") from exc


class EndpointPool:
    """Opens connections to one endpoint and keeps up to ``max_idle`` of them for reuse."""

    def __init__(
        self, address: str, max_idle: int, high_water: int, connect_timeout_s: float
    ) -> None:
        self.host, self.port = split_address(address)
        self.host_header = address
        self._max_idle = max_idle
        self._high_water = high_water
        self._connect_timeout_s = connect_timeout_s
        self._idle: list[Http1Connection] = []

    async def acquire(self, *, fresh: bool = False) -> tuple[Http1Connection, bool]:
        """An idle live connection (``reused`` True), or a new one."""
        idle = self._idle
        while idle and not fresh:
            conn = idle.pop()
            if not conn.closed:
                return conn, True
        return await self._connect(), False

    def release(self, conn: Http1Connection) -> None:
        """Keep ``conn`` for the next request, or close it when the pool is full."""
        idle = self._idle
        if len(idle) >= self._max_idle:
            idle[:] = [c for c in idle if not c.closed]  # drop those the engine closed
        if len(idle) < self._max_idle:
            idle.append(conn)
        else:
            conn.close()

    def close_idle(self) -> None:
        idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()

    async def _connect(self) -> Http1Connection:
        loop = asyncio.get_running_loop()
        conn = Http1Connection(self._high_water)
        try:
            async with asyncio.timeout(self._connect_timeout_s):
                await loop.create_connection(lambda: conn, self.host, self.port)
        except TimeoutError as exc:
            raise UpstreamTimeout(
                f"could not connect to {self.host_header} within {self._connect_timeout_s:g} s",
                code=_CONNECT,
            ) from exc
        except OSError as exc:
            raise UpstreamError(
                f"could not connect to {self.host_header}: {exc.strerror or exc}", code=_CONNECT
            ) from exc
        return conn
