"""Serving the APIs engines do not speak (``/v1/responses``, ``/v1/messages``) by translation.

The request path is the one of ``/v1/chat/completions`` (:class:`ProxyEndpoint` with a
:class:`~pilothouse.openai.translation.Dialect`): the client's request is translated into
a chat completions request, which is parsed and validated like one, routed, admitted and
charged like one, and sent to the engine's ``/v1/chat/completions``. Only the answer is
handled differently: where a native answer is relayed byte for byte
(:mod:`pilothouse.gateway.upstream`), a translated one is read, turned into the client's
API, and sent; a stream is translated chunk by chunk as it arrives. Usage is read from the
engine's chat answer, so charging is the same as for chat.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import orjson

from pilothouse.errors import (
    BadRequest,
    RequestError,
    SchedulingError,
    UpstreamError,
    UpstreamTimeout,
)
from pilothouse.gateway.asgi import Send, send_bytes
from pilothouse.gateway.upstream import Finish, Outcome, openai_error
from pilothouse.openai.errors import error_from_exception
from pilothouse.openai.requests import ParsedRequest, Route, parse_request
from pilothouse.openai.sse import usage_counts
from pilothouse.openai.translation import ChatChunks, Dialect, Translation
from pilothouse.transport import UpstreamResponse

_JSON = b"application/json"


def translate_request(dialect: Dialect, raw: bytes) -> tuple[Translation, ParsedRequest]:
    """The client's request as a chat completions request, validated like one."""
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"request body is not valid JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise BadRequest("request body must be a JSON object")
    translation = dialect.translate(doc)
    try:
        chat = orjson.dumps(translation.chat)
    except orjson.JSONEncodeError as exc:  # e.g. nested deeper than orjson writes (254)
        raise BadRequest(f"request body cannot be re-encoded: {exc}", code="invalid_json") from exc
    return translation, parse_request(Route.CHAT, chat)


def authorization(dialect: Dialect | None, headers: dict[bytes, bytes]) -> bytes | None:
    """The request's credential as an ``Authorization`` value; on an API whose clients send
    ``x-api-key`` (Anthropic's), that key when no ``Authorization`` header came."""
    value = headers.get(b"authorization")
    if value is None and dialect is not None and dialect.accepts_x_api_key:
        key = headers.get(b"x-api-key", b"").strip()
        if key:
            value = b"Bearer " + key
    return value


async def send_dialect_error(
    send: Send,
    dialect: Dialect,
    exc: RequestError | SchedulingError,
    headers: list[tuple[bytes, bytes]],
) -> int:
    """One of our errors, in the client API's error shape (headers such as retry-after kept)."""
    status, _, extra = error_from_exception(exc)
    if isinstance(exc, RequestError):
        body = dialect.error_body(status, exc.message, exc.error_type, exc.param, exc.code)
    else:
        body = dialect.error_body(status, str(exc), exc.error_type, None, None)
    extra_headers = [(k.encode(), v.encode()) for k, v in extra.items()]
    await send_bytes(send, status, body, headers + extra_headers)
    return status


def _engine_error(dialect: Dialect, status: int, body: bytes) -> bytes:
    """An engine's error answer, in the client API's error shape."""
    error: dict[str, Any] = orjson.loads(openai_error(status, body))["error"]
    return dialect.error_body(
        status, str(error.get("message")), str(error.get("type")), error.get("param"),
        error.get("code"),
    )  # fmt: skip


async def relay_translated_whole(
    resp: UpstreamResponse,
    send: Send,
    headers: list[tuple[bytes, bytes]],
    dialect: Dialect,
    translation: Translation,
    finish: Finish,
) -> Outcome:
    """Read the engine's chat completion and send it as the client API's answer."""
    body = await resp.read()
    outcome = Outcome(status=resp.status)
    if resp.status == 200:
        try:
            doc = orjson.loads(body)
        except orjson.JSONDecodeError:
            doc = None
        if isinstance(doc, dict):
            outcome.prompt_tokens, outcome.completion_tokens = usage_counts(doc.get("usage"))
            body = orjson.dumps(translation.answer(doc))
        else:
            outcome.status = 502
            message = f"the engine's answer is not a chat completion: {body[:200]!r}"
            body = dialect.error_body(502, message, "upstream_error", None, None)
    else:
        body = _engine_error(dialect, resp.status, body)
    finish(outcome)
    await send_bytes(send, outcome.status, body, headers, _JSON)
    return outcome


async def relay_translated_stream(
    resp: UpstreamResponse,
    send: Send,
    headers: list[tuple[bytes, bytes]],
    started: float,
    observe_itl: Callable[[float], None],
    on_first_chunk: Callable[[], None],
    translation: Translation,
    finish: Finish,
) -> Outcome:
    """Translate the engine's chat chunks into the client API's events as they arrive."""
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", b"text/event-stream"),
                (b"cache-control", b"no-cache"),
                *headers,
            ],
        }
    )
    outcome = Outcome(status=200)
    events = translation.stream()
    chunks = ChatChunks()
    usage: object = None
    last = 0.0
    try:
        async for data in resp.chunks():
            now = time.perf_counter()
            if last:
                observe_itl(now - last)
            else:
                outcome.ttft_s = now - started
                on_first_chunk()
            last = now
            outcome.chunks += 1
            out = b""
            for chunk in chunks.feed(data):
                if chunk.get("usage"):
                    usage = chunk["usage"]
                if isinstance(chunk.get("error"), dict):  # the engine's own error event
                    message = chunk["error"].get("message") or "the engine reported an error"
                    raise UpstreamError(str(message))
                out += events.feed(chunk)
            if out:
                await send({"type": "http.response.body", "body": out, "more_body": True})
    except (UpstreamError, UpstreamTimeout) as exc:  # broke off, or stalled past read_timeout_s
        outcome.broken = True
        failed = events.fail(f"the engine stream broke: {exc.message}")
        await send({"type": "http.response.body", "body": failed, "more_body": True})
    if not outcome.broken:
        outcome.prompt_tokens, outcome.completion_tokens = usage_counts(usage)
    finish(outcome)
    await send({"type": "http.response.body", "body": b"" if outcome.broken else events.finish()})
    return outcome
