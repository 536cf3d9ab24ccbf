"""A lean HTTP/1.1 client for the upstream leg: raw asyncio Protocols parsed by httptools.

Per request it builds one bytes head, writes head and body with one ``transport.write``,
and hands body pieces to the caller as they arrive; per endpoint it keeps a bounded stack
of idle keep-alive connections (the most recently used is reused first, so the rest age
out on the engine's keep-alive timeout). Why not aiohttp: its per-request objects
(``ClientRequest``, ``ClientResponse``, multidicts, ``URL``, timers) were about a third of
the gateway's CPU; see ``docs/transport.md`` for the measured comparison.

Timeouts: ``connect_timeout_s`` to open a connection, ``UpstreamRequest.timeout_s`` (or
``headers_timeout_s``) until the response's headers, ``read_timeout_s`` of silence while
the caller waits for body bytes. A connection is reused only after a complete response
with keep-alive; after an error, a timeout or a response closed unread it is closed.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping

from pilothouse.errors import RequestError, UpstreamError
from pilothouse.transport import UpstreamRequest
from pilothouse.transport.http1_conn import Http1Connection
from pilothouse.transport.http1_pool import EndpointPool, encode_head

_SINGLE_WRITE_BYTES = 64 * 1024


class Http1Response:
    """An engine's answer on one connection; the body is read or streamed once."""

    __slots__ = ("_conn", "_headers", "_pool", "_read_timeout_s", "status")

    def __init__(
        self, conn: Http1Connection, pool: EndpointPool, read_timeout_s: float | None
    ) -> None:
        self._conn: Http1Connection | None = conn
        self._pool = pool
        self._read_timeout_s = read_timeout_s
        self._headers: dict[str, str] | None = None
        self.status = conn.status

    @property
    def headers(self) -> Mapping[str, str]:
        """Response headers, names in lower case (repeated ones joined with ``, ``)."""
        if self._headers is None:
            self._headers = _header_map(self._conn.header_list if self._conn else [])
        return self._headers

    async def chunks(self) -> AsyncIterator[bytes]:
        conn = self._require()
        while (piece := await self._next(conn)) is not None:
            yield piece

    async def read(self) -> bytes:
        # Its own loop, not ``chunks()``: an async generator costs a few µs per response.
        conn = self._require()
        pieces = []
        while (piece := await self._next(conn)) is not None:
            pieces.append(piece)
        return pieces[0] if len(pieces) == 1 else b"".join(pieces)

    async def _next(self, conn: Http1Connection) -> bytes | None:
        """The body bytes that arrived since the last call, or ``None`` at its end."""
        if self._headers is None:
            self._headers = _header_map(conn.header_list)
        while True:
            if conn.buffered:
                return conn.take()
            if conn.complete:
                return None
            if conn.error is not None:
                raise conn.error
            await _wait(conn, self._read_timeout_s, "the engine sent nothing for")

    async def aclose(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        if self._headers is None:
            self._headers = _header_map(conn.header_list)
        conn.busy = False
        if conn.reusable():
            self._pool.release(conn)
        else:
            conn.close()

    def _require(self) -> Http1Connection:
        if self._conn is None:
            raise UpstreamError("the response was already closed")
        return self._conn


def _header_map(pairs: list[tuple[bytes, bytes]]) -> dict[str, str]:
    headers: dict[str, str] = {}
    for raw_name, raw_value in pairs:
        name, value = raw_name.decode("latin-1"), raw_value.decode("latin-1")
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    return headers


async def _wait(conn: Http1Connection, timeout_s: float | None, what: str) -> None:
    """Wait for the connection's next event; on silence past ``timeout_s``, fail it."""
    waiter = conn.wait()
    if timeout_s is None:
        await waiter
        return
    conn.expire_in(timeout_s, what)
    try:
        await waiter
    finally:
        conn.stop_expiry()


class Http1Transport:
    """:class:`~pilothouse.transport.Transport` over pooled HTTP/1.1 keep-alive connections."""

    def __init__(
        self,
        *,
        connect_timeout_s: float = 5.0,
        headers_timeout_s: float | None = 600.0,
        read_timeout_s: float | None = 600.0,
        max_idle_per_endpoint: int = 64,
        high_water_bytes: int = 256 * 1024,
    ) -> None:
        self._connect_timeout_s = connect_timeout_s
        self._headers_timeout_s = headers_timeout_s
        self._read_timeout_s = read_timeout_s
        self._max_idle = max_idle_per_endpoint
        self._high_water = high_water_bytes
        self._pools: dict[str, EndpointPool] = {}

    async def send(self, address: str, request: UpstreamRequest) -> Http1Response:
        pool = self._pools.get(address)
        if pool is None:
            pool = self._pools[address] = EndpointPool(
                address, self._max_idle, self._high_water, self._connect_timeout_s
            )
        head = encode_head(pool.host_header, request)
        conn, reused = await pool.acquire()
        try:
            return await self._exchange(pool, conn, head, request)
        except UpstreamError:
            if not (reused and not conn.received_any and conn.closed):
                raise
        # A reused idle connection the engine closed just as we sent: once more, fresh.
        conn, _ = await pool.acquire(fresh=True)
        return await self._exchange(pool, conn, head, request)

    async def _exchange(
        self, pool: EndpointPool, conn: Http1Connection, head: bytes, request: UpstreamRequest
    ) -> Http1Response:
        body = request.body
        if len(body) <= _SINGLE_WRITE_BYTES:
            conn.start(head + body)
        else:
            conn.start(head, body)
        timeout_s = request.timeout_s if request.timeout_s is not None else self._headers_timeout_s
        try:
            while not conn.headers_done:
                if conn.error is not None:
                    raise conn.error
                await _wait(conn, timeout_s, "the engine sent no response headers within")
        except (RequestError, asyncio.CancelledError):
            conn.busy = False
            conn.close()
            raise
        return Http1Response(conn, pool, self._read_timeout_s)

    async def aclose(self) -> None:
        """Close every idle connection; responses still open close their own."""
        pools, self._pools = self._pools, {}
        for pool in pools.values():
            pool.close_idle()
