"""One streamed OpenAI request of a live benchmark, timed from its SSE chunks.

A workload request becomes a ``/v1/completions`` (or ``/v1/chat/completions``) body with
the prompt text, ``max_tokens`` set to the request's output length, ``ignore_eos`` (vLLM's
flag, so a real model writes the whole answer; others ignore it), ``stream`` and
``stream_options.include_usage``. Its session and tenant travel as the ``x-session-id``
and ``x-pilothouse-tenant`` headers, which pilothouse's gateway routes on and other
routers ignore.

Timing uses ``time.perf_counter`` (uvloop's loop clock has only millisecond resolution):
the **TTFT** is from just before the request is sent to the first chunk that carries
text; the **inter-token gaps** are the times between consecutive text chunks. When the
final usage says more tokens were generated than text chunks arrived (a server that packs
several tokens into a chunk), the request's gaps are replaced by its mean gap,
``(last chunk - first chunk) / (tokens - 1)``, once per token, so the gaps stay per token.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson

from pilothouse.errors import PilothouseError
from pilothouse.sim.cluster_types import SimRequest

API_PATHS: Mapping[str, str] = {"completions": "/v1/completions", "chat": "/v1/chat/completions"}
_DATA = b"data:"
_DONE = b"[DONE]"
_ERROR_BODY_BYTES = 300


@dataclass(frozen=True, slots=True)
class RequestOutcome:
    """What one request did; times are ``time.perf_counter()`` wall seconds."""

    request_id: str
    sent_at: float
    done_at: float
    error: str | None = None
    first_token_at: float | None = None
    gaps: tuple[float, ...] = ()
    completion_tokens: int = 0
    prompt_tokens: int | None = None
    cached_tokens: int | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def request_body(request: SimRequest, model: str, api: str) -> bytes:
    """The JSON body that asks for exactly the request's output length, streamed."""
    doc: dict[str, Any] = {
        "model": model,
        "max_tokens": request.output_tokens,
        "ignore_eos": True,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    if api == "chat":
        doc["messages"] = [{"role": "user", "content": request.prompt}]
    else:
        doc["prompt"] = request.prompt
    return orjson.dumps(doc)


def request_headers(request: SimRequest) -> dict[str, str]:
    headers = {"Content-Type": "application/json"}
    if request.session_id is not None:
        headers["x-session-id"] = request.session_id
    if request.tenant is not None:
        headers["x-pilothouse-tenant"] = request.tenant
    return headers


@dataclass(slots=True)
class _StreamState:
    """Accumulates one stream's chunks."""

    first: float | None = None
    last: float | None = None
    gaps: list[float] = field(default_factory=list)
    chunks: int = 0
    usage: dict[str, Any] | None = None
    done: bool = False

    def event(self, payload: bytes, at: float) -> None:
        if payload == _DONE:
            self.done = True
            return
        doc = orjson.loads(payload)
        if isinstance(doc.get("usage"), dict):
            self.usage = doc["usage"]
        if not any(_text(choice) for choice in doc.get("choices") or ()):
            return
        if self.last is None:
            self.first = at
        else:
            self.gaps.append(at - self.last)
        self.last = at
        self.chunks += 1

    def per_token_gaps(self, tokens: int) -> tuple[float, ...]:
        if tokens <= self.chunks or tokens < 2 or self.first is None or self.last is None:
            return tuple(self.gaps)
        mean = (self.last - self.first) / (tokens - 1)
        return (mean,) * (tokens - 1)


def _text(choice: Any) -> str:
    if not isinstance(choice, dict):
        return ""
    delta = choice.get("delta")
    if isinstance(delta, dict):
        return delta.get("content") or delta.get("reasoning_content") or ""
    return choice.get("text") or ""


async def send_streaming(
    session: aiohttp.ClientSession, url: str, body: bytes, headers: Mapping[str, str]
) -> tuple[_StreamState, float]:
    """POST ``body`` and read the SSE stream to its end; returns the state and send time."""
    state = _StreamState()
    sent_at = time.perf_counter()
    async with session.post(url, data=body, headers=headers) as resp:
        if resp.status != 200:
            text = (await resp.read())[:_ERROR_BODY_BYTES]
            raise _HttpError(f"HTTP {resp.status}: {text.decode(errors='replace')}")
        async for line in resp.content:
            if line.startswith(_DATA):
                state.event(line[len(_DATA) :].strip(), time.perf_counter())
    if not state.done:
        raise _HttpError("the stream ended without data: [DONE]")
    return state, sent_at


class _HttpError(PilothouseError):
    """A failed request (status, broken stream); its message is the outcome's error."""


async def run_request(
    session: aiohttp.ClientSession, url: str, request: SimRequest, model: str, api: str
) -> RequestOutcome:
    """Send one workload request and time it; never raises for a failed request."""
    body, headers = request_body(request, model, api), request_headers(request)
    started = time.perf_counter()
    try:
        state, sent_at = await send_streaming(session, url, body, headers)
    except (_HttpError, aiohttp.ClientError, TimeoutError, ValueError) as exc:
        error = str(exc) if isinstance(exc, _HttpError) else f"{type(exc).__name__}: {exc}"
        return RequestOutcome(request.request_id, started, time.perf_counter(), error=error)
    usage = state.usage or {}
    tokens = int(usage.get("completion_tokens") or state.chunks)
    details = usage.get("prompt_tokens_details") or {}
    return RequestOutcome(
        request.request_id,
        sent_at,
        time.perf_counter(),
        first_token_at=state.first,
        gaps=state.per_token_gaps(tokens),
        completion_tokens=tokens,
        prompt_tokens=usage.get("prompt_tokens"),
        cached_tokens=details.get("cached_tokens") if isinstance(details, dict) else None,
    )
