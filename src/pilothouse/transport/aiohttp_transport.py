"""The upstream leg on aiohttp: the general-purpose client, kept as a fallback and baseline.

aiohttp's errors and ``TimeoutError`` are translated to the project's upstream errors here,
so callers never import aiohttp. Closing a response whose body was not read to the end
closes its connection (``ClientResponse.close``), never returns it to the pool: that is
how the engine learns its client left.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping

import aiohttp

from pilothouse.errors import UpstreamError, UpstreamTimeout
from pilothouse.transport import UpstreamRequest

_SKIP_AUTO = frozenset({"Accept-Encoding", "User-Agent"})
_CONNECT = "upstream_connect"


def _translate(exc: BaseException, what: str) -> UpstreamError | UpstreamTimeout:
    if isinstance(exc, aiohttp.ClientConnectorError):
        return UpstreamError(f"{what}: could not connect ({exc.os_error})", code=_CONNECT)
    if isinstance(exc, TimeoutError):
        return UpstreamTimeout(f"{what}: timed out")
    return UpstreamError(f"{what}: {type(exc).__name__}: {exc}")


class AiohttpResponse:
    """An :class:`~pilothouse.transport.UpstreamResponse` over one ``aiohttp.ClientResponse``."""

    __slots__ = ("_done", "_headers", "_resp", "status")

    def __init__(self, resp: aiohttp.ClientResponse) -> None:
        self._resp = resp
        self._done = False
        self._headers: dict[str, str] | None = None
        self.status = resp.status

    @property
    def headers(self) -> Mapping[str, str]:
        if self._headers is None:
            headers: dict[str, str] = {}
            for name, value in self._resp.headers.items():
                key = name.lower()
                headers[key] = f"{headers[key]}, {value}" if key in headers else value
            self._headers = headers
        return self._headers

    async def chunks(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._resp.content.iter_any():
                yield chunk
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise _translate(exc, "the engine's stream broke") from exc
        self._done = True

    async def read(self) -> bytes:
        try:
            body = await self._resp.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise _translate(exc, "the engine's body broke off") from exc
        self._done = True
        return body

    async def aclose(self) -> None:
        if self._done:
            self._resp.release()
        else:
            self._resp.close()


class AiohttpTransport:
    """:class:`~pilothouse.transport.Transport` on one ``aiohttp.ClientSession``.

    Without a ``session`` it makes (and owns, so :meth:`aclose` closes) one with an
    unbounded keep-alive pool and the given timeouts; a session passed in stays the
    caller's to close.
    """

    def __init__(
        self,
        session: aiohttp.ClientSession | None = None,
        *,
        connect_timeout_s: float = 5.0,
        headers_timeout_s: float | None = 600.0,
        read_timeout_s: float | None = 600.0,
    ) -> None:
        self._owned = session is None
        self._session = session
        self._timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=connect_timeout_s, sock_read=read_timeout_s
        )
        self._headers_timeout_s = headers_timeout_s

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=60, ttl_dns_cache=300)
            self._session = aiohttp.ClientSession(
                connector=connector, timeout=self._timeout, auto_decompress=False
            )
        return self._session

    async def send(self, address: str, request: UpstreamRequest) -> AiohttpResponse:
        session = self._open()
        headers = {"Content-Type": request.content_type, **dict(request.headers)}
        timeout_s = request.timeout_s if request.timeout_s is not None else self._headers_timeout_s
        try:
            async with asyncio.timeout(timeout_s):
                resp = await session.request(
                    request.method,
                    f"http://{address}{request.path}",
                    data=request.body,
                    headers=headers,
                    skip_auto_headers=_SKIP_AUTO,
                )
        except aiohttp.ConnectionTimeoutError as exc:
            raise UpstreamTimeout(f"engine {address}: {exc}", code=_CONNECT) from exc
        except TimeoutError as exc:
            raise UpstreamTimeout(
                f"engine {address} sent no response headers within {timeout_s:g} s"
            ) from exc
        except aiohttp.ClientError as exc:
            raise _translate(exc, f"engine {address}") from exc
        return AiohttpResponse(resp)

    async def aclose(self) -> None:
        """Close the session this transport made (a session passed in is left open)."""
        session, self._session = self._session, None
        if session is not None and self._owned:
            await session.close()
