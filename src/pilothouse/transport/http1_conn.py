"""One keep-alive HTTP/1.1 connection to an engine: an asyncio Protocol fed to httptools.

The connection carries one exchange at a time. The response parser's callbacks write the
status, the headers and body pieces straight into the connection's fields, and a consumer
(:class:`pilothouse.transport.http1.Http1Response`) takes them out; nothing is built per
body piece but the bytes object the parser hands over. Flow control: when more than
``high_water`` bytes wait unread, reading from the socket pauses until the consumer has
taken them, so a slow client never makes the gateway buffer a whole engine stream.

Every failure (a parse error, the socket closing mid-message, a timeout) is stored as an
:class:`~pilothouse.errors.UpstreamError` or :class:`~pilothouse.errors.UpstreamTimeout`
and wakes whoever waits; a connection that saw one is never reused.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import cast

import httptools

from pilothouse.deadline import Deadline
from pilothouse.errors import RequestError, UpstreamError, UpstreamTimeout

_FRAMING = frozenset({b"content-length", b"transfer-encoding"})


class Http1Connection(asyncio.Protocol):
    """The socket, the parser and the state of the exchange in flight."""

    def __init__(self, high_water: int) -> None:
        self.transport: asyncio.Transport | None = None
        self.high_water = high_water
        self.status = 0
        self.header_list: list[tuple[bytes, bytes]] = []
        self.buffer: deque[bytes] = deque()
        self.buffered = 0
        self.headers_done = False
        self.complete = False
        self.error: RequestError | None = None
        self.closed = False
        self.busy = False
        self.received_any = False
        self.waiter: asyncio.Future[None] | None = None
        self._paused = False
        self._framed = False
        self._parser = httptools.HttpResponseParser(self)
        self._deadline: Deadline | None = None  # the wait in progress (see :meth:`expire_in`)
        # Python 3.11's get_running_loop() makes a getpid() system call: asked once here.
        self._loop = asyncio.get_running_loop()
        self._silence = (0.0, "")

    # --- the exchange, for Http1Transport and Http1Response ------------------------------

    def start(self, head_and_body: bytes, body: bytes = b"") -> None:
        """Begin an exchange: reset the response state and write the request."""
        self.status, self.header_list, self.buffered = 0, [], 0
        self.headers_done = self.complete = self._framed = self.received_any = False
        self.buffer.clear()
        self.busy = True
        assert self.transport is not None
        self.transport.write(head_and_body)
        if body:
            self.transport.write(body)

    def take(self) -> bytes:
        """Every body byte that has arrived and not been taken yet (``b""`` when none)."""
        buffer = self.buffer
        data = buffer.popleft() if len(buffer) == 1 else b"".join(buffer)
        buffer.clear()
        self.buffered = 0
        if self._paused and not self.closed:
            self._paused = False
            assert self.transport is not None
            self.transport.resume_reading()
        return data

    def wait(self) -> asyncio.Future[None]:
        """A future that resolves on the next change: headers, body, end or failure."""
        waiter = self.waiter = self._loop.create_future()
        return waiter

    def expire_in(self, timeout_s: float, what: str) -> None:
        """Fail with :class:`UpstreamTimeout` unless something happens within ``timeout_s``
        (until :meth:`stop_expiry`); one reused timer, not one per wait."""
        deadline = self._deadline
        if deadline is None:
            deadline = self._deadline = Deadline(self._loop, self._expired)
        self._silence = (timeout_s, what)
        deadline.arm(timeout_s)

    def stop_expiry(self) -> None:
        if self._deadline is not None:
            self._deadline.clear()

    def _expired(self) -> None:
        timeout_s, what = self._silence
        self.fail(UpstreamTimeout(f"{what} {timeout_s:g} s"))

    def fail(self, error: RequestError) -> None:
        """Record ``error`` (the first one wins), close the socket and wake the waiter."""
        if self.error is None and not self.complete:
            self.error = error
        self.close()
        self._wake()

    def close(self) -> None:
        """Close the socket (the engine sees its client leave); never reused after this."""
        self.closed = True
        if self._deadline is not None:
            self._deadline.cancel()
        if self.transport is not None:
            self.transport.close()

    def reusable(self) -> bool:
        return self.complete and not self.closed and self.error is None

    def _wake(self) -> None:
        waiter = self.waiter
        if waiter is not None:
            self.waiter = None
            if not waiter.done():
                waiter.set_result(None)

    # --- asyncio.Protocol -----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        if not self.busy or self.complete:
            self.fail(UpstreamError("the engine sent bytes outside a response"))
            return
        self.received_any = True
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self.fail(UpstreamError(f"the engine sent malformed HTTP: {exc}"))

    def eof_received(self) -> bool:
        return False  # close the transport; connection_lost settles the exchange

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._deadline is not None:
            self._deadline.cancel()
        if self.busy and not self.complete:
            if self.headers_done and not self._framed and exc is None:
                self.on_message_complete()  # a body delimited by the connection's close
            else:
                why = f": {exc}" if exc else ""
                self.fail(UpstreamError(f"the engine closed the connection mid-response{why}"))
        self._wake()

    # --- httptools callbacks --------------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        name = name.lower()
        if name in _FRAMING:
            self._framed = True
        self.header_list.append((name, value))

    def on_headers_complete(self) -> None:
        self.status = self._parser.get_status_code()
        self.headers_done = True
        self._wake()

    def on_body(self, body: bytes) -> None:
        self.buffer.append(body)
        self.buffered += len(body)
        if self.buffered > self.high_water and not self._paused:
            self._paused = True
            assert self.transport is not None
            self.transport.pause_reading()
        self._wake()

    def on_message_complete(self) -> None:
        self.complete = True
        if not self._parser.should_keep_alive():
            self.close()
        self._wake()
