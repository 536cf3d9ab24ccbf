"""The end of a shutdown drain: requests still running are answered, not just dropped.

On SIGINT/SIGTERM the gateway stops accepting and waits up to ``gateway.drain_timeout_s``
for requests in flight; uvicorn then cancels those still running. :class:`DrainCutoff` wraps
the app and turns that cancellation into an answer: a 503 OpenAI error if nothing was sent
yet, else (a stream) a final SSE error event and ``[DONE]``. The request then ends normally,
so no ``CancelledError`` traceback is logged for it. Any other cancellation propagates.

It costs nothing per chunk: whether the response has started is learnt from the server's
own refusal of an out-of-order message (ASGI servers raise ``RuntimeError``).
"""

from __future__ import annotations

import asyncio
import logging

from pilothouse.gateway.asgi import ASGIApp, Receive, Scope, Send
from pilothouse.openai.errors import error_body, sse_error_event

log = logging.getLogger("pilothouse")
_MESSAGE = "the gateway shut down before this request finished"


class DrainCutoff:
    """ASGI wrapper; :meth:`begin` when the drain starts (see the module docstring)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.draining = False
        self.cut = 0

    def begin(self) -> None:
        self.draining = True

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        try:
            await self.app(scope, receive, send)
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if not self.draining or task is None:
                raise
            task.uncancel()
            self.cut += 1
            await _answer(send)


async def _answer(send: Send) -> None:
    """503 if the response has not started, else end the stream with an SSE error event."""
    body = error_body(_MESSAGE, "service_unavailable")
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    try:
        await send({"type": "http.response.start", "status": 503, "headers": headers})
    except RuntimeError:  # started: a stream (or a body) is half sent
        body = sse_error_event(_MESSAGE, "service_unavailable")
    try:
        await send({"type": "http.response.body", "body": body, "more_body": False})
    except (RuntimeError, OSError):  # complete already, or the client is gone
        log.debug("a request cut by the drain could not be answered")
