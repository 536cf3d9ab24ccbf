"""Small raw-ASGI helpers for the request path (no framework objects per request)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from pilothouse.errors import PayloadTooLarge, RequestError, SchedulingError
from pilothouse.openai.errors import error_from_exception

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

JSON = b"application/json"


def header_map(scope: Scope) -> dict[bytes, bytes]:
    """Request headers by lower-case name (ASGI already lower-cases them)."""
    return dict(scope["headers"])


async def read_body(receive: Receive, headers: dict[bytes, bytes], limit: int) -> bytes:
    """The whole request body, refusing more than ``limit`` bytes early."""
    declared = headers.get(b"content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(
            f"request body of {int(declared)} bytes exceeds the {limit}-byte limit"
        )
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"request body exceeds the {limit}-byte limit")
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def send_bytes(
    send: Send,
    status: int,
    body: bytes,
    headers: list[tuple[bytes, bytes]],
    content_type: bytes = JSON,
) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", content_type),
                (b"content-length", str(len(body)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def send_error(
    send: Send, exc: RequestError | SchedulingError, headers: list[tuple[bytes, bytes]]
) -> int:
    status, body, extra = error_from_exception(exc)
    extra_headers = [(k.encode(), v.encode()) for k, v in extra.items()]
    await send_bytes(send, status, body, headers + extra_headers)
    return status


#: The scope extension under which a server hands the request path a :class:`DisconnectSignal`.
DISCONNECT_EXTENSION = "pilothouse.disconnect"


class DisconnectSignal:
    """Fired once when the connection carrying a request is lost. ``loop``: the server's
    event loop, when it hands it over (Python 3.11's ``get_running_loop()`` makes a
    ``getpid()`` system call; the request path then asks for its task without one)."""

    __slots__ = ("callback", "fired", "loop")

    def __init__(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self.fired = False
        self.callback: Callable[[], None] | None = None
        self.loop = loop

    def fire(self) -> None:
        self.fired = True
        callback, self.callback = self.callback, None
        if callback is not None:
            callback()


class ClientWatch:
    """Notices a client that leaves before its answer is complete, and cancels its task.

    Under the gateway's own server (:mod:`pilothouse.gateway.http_server`) the scope carries
    a disconnect signal, and the watch is a callback on it. Under any other ASGI server the
    disconnect is reported through ``receive()`` once the body has been read: a watcher task
    waits for it. Either way the request's task is cancelled, so whatever the request awaits
    (a wait queue, the engine's first byte, the next chunk) stops at once and its
    ``finally`` blocks give everything back. ``send`` is wrapped to know when the answer is
    complete: a disconnect after that is the normal end of the exchange.
    """

    __slots__ = ("_receive", "_send", "_signal", "_task", "_watcher", "complete", "gone")

    def __init__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self._receive = receive
        self._send = send
        extensions = scope.get("extensions")
        signal = extensions.get(DISCONNECT_EXTENSION) if extensions else None
        self._signal = signal if isinstance(signal, DisconnectSignal) else None
        self._task: asyncio.Task[None] | None = None
        self._watcher: asyncio.Task[None] | None = None
        self.complete = False
        self.gone = False

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.body" and not message.get("more_body", False):
            self.complete = True
        await self._send(message)

    def start(self) -> None:
        signal = self._signal
        loop = signal.loop if signal is not None else None
        task = asyncio.current_task(loop) if loop is not None else asyncio.current_task()
        assert task is not None  # called from the request's task
        if signal is None:
            self._watcher = asyncio.create_task(self._watch(task))
        elif signal.fired:
            self._leave(task)
        else:
            self._task = task
            signal.callback = self._disconnected

    def stop(self) -> None:
        if self._signal is not None:
            self._signal.callback = None
            self._task = None
        if self._watcher is not None:
            self._watcher.cancel()
            self._watcher = None

    def left(self, task: asyncio.Task[object] | None) -> bool:
        """After a ``CancelledError``: True when it came from the client leaving (the
        task's cancellation is then consumed); False for any other cancellation."""
        if not self.gone or task is None:
            return False
        task.uncancel()
        return True

    def _disconnected(self) -> None:
        if self._task is not None:
            self._leave(self._task)

    def _leave(self, task: asyncio.Task[None]) -> None:
        if not self.complete:
            self.gone = True
            task.cancel()

    async def _watch(self, task: asyncio.Task[None]) -> None:
        while True:
            message = await self._receive()
            if message["type"] == "http.disconnect":
                break
        self._leave(task)
