"""One HTTP/1.1 request and its response on a gateway connection, for the ASGI app.

uvicorn's ``RequestResponseCycle`` is written for any ASGI app and any response; per request
it builds an :class:`asyncio.Event`, validates every header with two regular expressions,
copies the default headers, and writes the head and the body of a fixed-length answer in
two writes. :class:`Cycle` keeps its contract (the attributes uvicorn's protocol reads and
sets: ``body``, ``more_body``, ``message_event``, ``disconnected``, ``keep_alive``,
``response_started``, ``response_complete``) and its checks, at less cost:

- the body waits on a future made only when the app asks for body that has not arrived
  (a request's body usually arrives with its head: no wait, no event); once the whole body
  was handed over, ``receive`` waits for the client to leave or the response to end, as
  uvicorn's does (Starlette's file and streaming responses listen for a disconnect so);
- header values are checked with one search over all of them, and a name once found valid
  is not checked again (names come from a handful of literals);
- a fixed-length answer's head is held until its body: one write (and one TCP segment)
  where there were two. Chunked answers (streams) send their head at once.

Requests it does not cover (HEAD, HTTP/1.0, upgrades, uvicorn's access log) keep uvicorn's
own cycle: :class:`~pilothouse.gateway.http_server.GatewayHttpProtocol` decides.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from uvicorn.protocols.http.flow_control import HIGH_WATER_LIMIT, FlowControl
from uvicorn.protocols.http.httptools_impl import HEADER_RE, HEADER_VALUE_RE, STATUS_LINE

log = logging.getLogger("uvicorn.error")

_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
_LAST_CHUNK = b"0\r\n\r\n"
_VALID_NAMES: set[bytes] = set()
"""Header names (lowercase) already found valid; bounded by :data:`_MAX_VALID_NAMES`."""
_MAX_VALID_NAMES = 256
_INTERNAL_ERROR = [
    (b"content-type", b"text/plain; charset=utf-8"),
    (b"content-length", b"21"),
    (b"connection", b"close"),
]


class Cycle:
    """See the module docstring. Made by the protocol when a request's head is complete."""

    __slots__ = (
        "_head",
        "_read",
        "_waiter",
        "body",
        "chunked",
        "default_headers",
        "disconnected",
        "flow",
        "keep_alive",
        "more_body",
        "on_response",
        "remaining",
        "response_complete",
        "response_started",
        "scope",
        "transport",
        "waiting_for_100_continue",
    )

    def __init__(
        self,
        scope: dict[str, Any],
        transport: asyncio.Transport,
        flow: FlowControl,
        default_headers: list[tuple[bytes, bytes]],
        expect_100_continue: bool,
        on_response: Callable[[], None],
    ) -> None:
        self.scope = scope
        self.transport = transport
        self.flow = flow
        self.default_headers = default_headers
        self.on_response = on_response
        self.disconnected = False
        self.keep_alive = True
        self.waiting_for_100_continue = expect_100_continue
        self.body: bytes | bytearray = b""
        self.more_body = True
        self.response_started = False
        self.response_complete = False
        self.chunked = False
        self.remaining = 0
        self._head: bytes | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._read = False  # the whole body was handed to the app

    # -- what the protocol calls --------------------------------------------------------

    @property
    def message_event(self) -> Cycle:
        """uvicorn's protocol calls ``cycle.message_event.set()``: :meth:`set` is here."""
        return self

    def set(self) -> None:
        """Something happened (body, its end, a disconnect): wake a waiting ``receive``."""
        waiter = self._waiter  # receive() forgets it once woken
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def add_body(self, chunk: bytes) -> None:
        body = self.body
        if not body:
            self.body = chunk
        else:
            if isinstance(body, bytes):
                body = self.body = bytearray(body)
            body += chunk
        if len(self.body) > HIGH_WATER_LIMIT:
            self.flow.pause_reading()
        self.set()

    # -- ASGI -----------------------------------------------------------------------------

    async def run_asgi(self, app: Callable[..., Any]) -> None:
        try:
            result = await app(self.scope, self.receive, self.send)
        except BaseException as exc:
            log.error("Exception in ASGI application\n", exc_info=exc)
            if not self.response_started:
                await self._send_500()
            else:
                self._close()
        else:
            if result is not None:
                log.error("ASGI callable should return None, but returned '%s'.", result)
                self._close()
            elif not self.response_started and not self.disconnected:
                log.error("ASGI callable returned without starting response.")
                await self._send_500()
            elif not self.response_complete and not self.disconnected:
                log.error("ASGI callable returned without completing response.")
                self._close()
        finally:
            self.on_response = _nothing

    async def receive(self) -> dict[str, Any]:
        if self.waiting_for_100_continue and not self.transport.is_closing():
            self.transport.write(_CONTINUE)
            self.waiting_for_100_continue = False
        if not self.disconnected and not self.response_complete:
            self.flow.resume_reading()
            if self._read or (self.more_body and not self.body):
                # Nothing to hand over yet, or the whole body was: wait for more of it, or
                # (an app listening for a disconnect) for the client to leave or the end.
                waiter = self._waiter = asyncio.get_running_loop().create_future()
                try:
                    await waiter
                finally:
                    self._waiter = None
        if self.disconnected or self.response_complete:
            return {"type": "http.disconnect"}
        body, self.body = self.body, b""
        if not self.more_body:
            self._read = True
        return {
            "type": "http.request",
            "body": body if isinstance(body, bytes) else bytes(body),
            "more_body": self.more_body,
        }

    async def send(self, message: dict[str, Any]) -> None:
        flow = self.flow
        if flow.write_paused and not self.disconnected:
            await flow.drain()
        if self.disconnected:
            return
        if not self.response_started:
            if message["type"] != "http.response.start":
                raise RuntimeError(
                    f"Expected ASGI message 'http.response.start', but got '{message['type']}'."
                )
            self._start(message["status"], message.get("headers", ()))
        elif not self.response_complete:
            if message["type"] != "http.response.body":
                raise RuntimeError(
                    f"Expected ASGI message 'http.response.body', but got '{message['type']}'."
                )
            self._body(message.get("body", b""), message.get("more_body", False))
        else:
            raise RuntimeError(
                f"Unexpected ASGI message '{message['type']}' sent, after response already "
                "completed."
            )

    # -- the response ---------------------------------------------------------------------

    def _start(self, status: int, headers: Any) -> None:
        self.response_started = True
        self.waiting_for_100_continue = False
        content = [STATUS_LINE[status]]
        for name, value in self.default_headers:
            content += (name, b": ", value, b"\r\n")
        length: int | None = None
        chunked = closing = False
        values = []
        for raw_name, value in headers:
            name = raw_name.lower()
            if name not in _VALID_NAMES:
                if HEADER_RE.search(name):
                    raise RuntimeError("Invalid HTTP header name.")
                if len(_VALID_NAMES) < _MAX_VALID_NAMES:
                    _VALID_NAMES.add(name)
            if name == b"content-length":
                if length is None and not chunked:
                    length = int(value.decode())
            elif name == b"transfer-encoding":
                if value.lower() == b"chunked" and length is None:
                    chunked = True
            elif name == b"connection" and b"close" in [
                token.lower().strip() for token in value.split(b",")
            ]:
                self.keep_alive = False
                closing = True
            values.append(value)
            content += (name, b": ", value, b"\r\n")
        if values and HEADER_VALUE_RE.search(b"\t".join(values)):  # \t is allowed, a joint
            raise RuntimeError("Invalid HTTP header value.")
        if not self.keep_alive and not closing:
            content.append(b"connection: close\r\n")
        if length is None and not chunked and status not in (204, 304):
            chunked = True  # neither length nor transfer-encoding: chunked
            content.append(b"transfer-encoding: chunked\r\n")
        content.append(b"\r\n")
        self.chunked = chunked
        self.remaining = length or 0
        head = b"".join(content)
        if chunked or length is None:
            self.transport.write(head)
        else:
            self._head = head  # written with the body: one write

    def _body(self, body: bytes, more_body: bool) -> None:
        head, self._head = self._head, None
        if self.chunked:
            if body:
                out = b"%x\r\n%b\r\n" % (len(body), body)
                self.transport.write(out + _LAST_CHUNK if not more_body else out)
            elif not more_body:
                self.transport.write(_LAST_CHUNK)
        else:
            if len(body) > self.remaining:
                raise RuntimeError("Response content longer than Content-Length")
            self.remaining -= len(body)
            if head is not None:
                self.transport.write(head + body)
            elif body:
                self.transport.write(body)
        if not more_body:
            if self.remaining:
                raise RuntimeError("Response content shorter than Content-Length")
            self.response_complete = True
            self.set()
            if not self.keep_alive:
                self.transport.close()
            self.on_response()

    async def _send_500(self) -> None:
        await self.send({"type": "http.response.start", "status": 500, "headers": _INTERNAL_ERROR})
        await self.send({"type": "http.response.body", "body": b"Internal Server Error"})

    def _close(self) -> None:
        """Close the connection, with a held head first (the answer is cut either way)."""
        head, self._head = self._head, None
        if head is not None:
            self.transport.write(head)
        self.transport.close()


def _nothing() -> None:
    return None
