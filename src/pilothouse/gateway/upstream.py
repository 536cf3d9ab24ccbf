"""Relaying one engine response to the client, and reading its usage on the way.

Relaying never re-encodes: bytes from the engine go to the client as they arrive. Only the
tail of a stream is kept, to read the engine's usage chunk once the stream ends.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import orjson

from pilothouse.errors import UpstreamError, UpstreamTimeout
from pilothouse.gateway.asgi import Send
from pilothouse.openai.errors import error_body, sse_error_event
from pilothouse.openai.sse import json_usage_and_finish, keep_tail, sse_usage_and_finish
from pilothouse.transport import UpstreamResponse

_ERROR_TEXT = 500
_CONTEXT_LENGTH = "maximum context length"
_CONTEXT_CODE = "context_length_exceeded"

#: What a request that ended because its client went away is counted and logged as
#: (nginx's "client closed request"; never sent: there is nobody to send it to).
CLIENT_CLOSED = 499
#: What a request the server cut (at the end of its shutdown drain) is counted as.
SERVER_CUT = 503


@dataclass(slots=True)
class Outcome:
    """What one relayed response looked like, for metrics and the access log."""

    status: int
    ttft_s: float | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    broken: bool = False
    client_left: bool = False
    cut: bool = False
    """Cut by the server itself (the end of a shutdown drain)."""
    chunks: int = 0
    """Stream chunks relayed (a lower bound of the tokens sent when usage is missing)."""
    finish_reasons: tuple[str, ...] = ()
    """The choices' ``finish_reason`` values (a stream's: those its tail still held)."""


Finish = Callable[[Outcome], None]
"""Called once the answer is complete, before its last bytes go to the client (the ledger)."""


def _nothing(outcome: Outcome) -> None:
    return None


def _start(
    status: int, content_type: bytes, headers: list[tuple[bytes, bytes]]
) -> dict[str, object]:
    return {
        "type": "http.response.start",
        "status": status,
        "headers": [(b"content-type", content_type), *headers],
    }


async def relay_whole(
    resp: UpstreamResponse,
    send: Send,
    headers: list[tuple[bytes, bytes]],
    finish: Finish = _nothing,
) -> Outcome:
    """Relay a non-streamed answer and read its usage; an engine's error answer that is
    not an OpenAI error body is rewritten into one (:func:`openai_error`)."""
    body = await resp.read()
    content_type = resp.headers.get("content-type", "application/json").encode()
    if resp.status >= 400:
        body, content_type = openai_error(resp.status, body), b"application/json"
    start = _start(resp.status, content_type, headers)
    start["headers"].append((b"content-length", str(len(body)).encode()))  # type: ignore[attr-defined]
    outcome = Outcome(status=resp.status)
    if resp.status == 200:
        usage, outcome.finish_reasons = json_usage_and_finish(body)
        _read_usage(outcome, usage)
    finish(outcome)
    await send(start)
    await send({"type": "http.response.body", "body": body})
    return outcome


async def relay_stream(
    resp: UpstreamResponse,
    send: Send,
    headers: list[tuple[bytes, bytes]],
    started: float,
    observe_itl: Callable[[float], None],
    on_first_chunk: Callable[[], None],
    finish: Finish = _nothing,
    *,
    finish_reasons: bool = False,
) -> Outcome:
    """Relay an SSE stream chunk by chunk; on a broken upstream, end with an error event.
    ``finish_reasons``: also read the choices' finish reasons from the tail (~10 µs; only
    a trace records them)."""
    content_type = resp.headers.get("content-type", "text/event-stream").encode()
    await send(_start(resp.status, content_type, [(b"cache-control", b"no-cache"), *headers]))
    outcome = Outcome(status=resp.status)
    tail = b""
    last = 0.0
    try:
        async for chunk in resp.chunks():
            now = time.perf_counter()
            if last:
                observe_itl(now - last)
            else:
                outcome.ttft_s = now - started
                on_first_chunk()
            last = now
            outcome.chunks += 1
            tail = keep_tail(tail, chunk)
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
    except (UpstreamError, UpstreamTimeout) as exc:  # broke off, or stalled past read_timeout_s
        outcome.broken = True
        event = sse_error_event(f"the engine stream broke: {exc.message}")
        await send({"type": "http.response.body", "body": event, "more_body": True})
    if not outcome.broken:
        usage, outcome.finish_reasons = sse_usage_and_finish(tail, finish_reasons)
        _read_usage(outcome, usage)
    finish(outcome)
    await send({"type": "http.response.body", "body": b""})
    return outcome


def openai_error(status: int, body: bytes) -> bytes:
    """``body`` when it already is ``{"error": {"message": …}}``; else an OpenAI error body
    carrying the engine's text (a text/plain 404, a bare JSON ``detail``…). A prompt over
    the model's context gets OpenAI's ``context_length_exceeded`` code."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        doc = None
    error = doc.get("error") if isinstance(doc, dict) else None
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        message = error["message"]
        if _CONTEXT_LENGTH in message.lower() and error.get("code") != _CONTEXT_CODE:
            return error_body(message, "invalid_request_error", param=error.get("param"),
                              code=_CONTEXT_CODE)  # fmt: skip
        return body
    text = _detail(doc) or body[:_ERROR_TEXT].decode("utf-8", "replace").strip()
    kind = "invalid_request_error" if status < 500 else "upstream_error"
    code = _CONTEXT_CODE if _CONTEXT_LENGTH in text.lower() else None
    return error_body(f"the engine answered {status}: {text}", kind, code=code)


def _detail(doc: object) -> str | None:
    if isinstance(doc, dict):
        for key in ("message", "detail", "error"):
            value = doc.get(key)
            if isinstance(value, str):
                return value[:_ERROR_TEXT]
    return None


def _read_usage(outcome: Outcome, usage: object) -> None:
    if isinstance(usage, dict):
        prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens")
        outcome.prompt_tokens = prompt if isinstance(prompt, int) else None
        outcome.completion_tokens = completion if isinstance(completion, int) else None
