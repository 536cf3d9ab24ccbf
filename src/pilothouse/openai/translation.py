"""What the OpenAI Responses and Anthropic Messages translators share.

Both APIs are served by rewriting the client's request into a chat completions request,
sending that to the engine, and turning the engine's answer (a chat completion, or its
stream of chunks) back into the client's API. A :class:`Translation` is one request's
half of that: it remembers what the client asked (its model name, its tools) to echo it
in the answer. :class:`ChatChunks` reads the engine's SSE stream back into chunks.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any, Protocol

import orjson

from pilothouse.errors import BadRequest


class ChatStream(Protocol):
    """Turns one engine stream of chat chunks into the client API's SSE events."""

    def feed(self, chunk: dict[str, Any]) -> bytes:
        """The events one chat completion chunk becomes (often none, never a partial one)."""
        ...

    def finish(self) -> bytes:
        """The closing events, once the engine's stream ended."""
        ...

    def fail(self, message: str) -> bytes:
        """An error event telling the client the stream broke."""
        ...


class Translation(Protocol):
    """One client request translated into a chat completions request."""

    chat: dict[str, Any]
    """The chat completions request to send to the engine."""

    def answer(self, completion: dict[str, Any]) -> dict[str, Any]:
        """The client API's answer for the engine's chat completion."""
        ...

    def stream(self) -> ChatStream:
        """A translator for the engine's streamed chunks."""
        ...


class Dialect(Protocol):
    """A client API served by translation: its request reader and its error shape."""

    path: str
    """The route the API is served on (``/v1/responses``)."""
    accepts_x_api_key: bool
    """Whether the API's clients send their key as ``x-api-key`` (Anthropic's)."""

    def translate(self, doc: dict[str, Any]) -> Translation:
        """The chat request for ``doc``; :class:`BadRequest` naming what cannot be served."""
        ...

    def error_body(
        self, status: int, message: str, error_type: str, param: str | None, code: str | None
    ) -> bytes:
        """An error answer in the API's own shape."""
        ...


def new_id(prefix: str) -> str:
    """A random id with the API's prefix (``resp_``, ``msg_``, ``fc_``)."""
    return prefix + os.urandom(12).hex()


def sse_event(name: str, data: dict[str, Any]) -> bytes:
    """One named SSE event (both APIs name their events; the SDKs dispatch on the name)."""
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


def json_arguments(text: str) -> dict[str, Any]:
    """A tool call's arguments (a JSON text) as an object; text that is not one is kept
    whole under ``"arguments"`` rather than dropped."""
    try:
        value = orjson.loads(text) if text.strip() else {}
    except orjson.JSONDecodeError:
        return {"arguments": text}
    return value if isinstance(value, dict) else {"arguments": value}


def first_choice(completion: dict[str, Any]) -> dict[str, Any]:
    """The engine's first choice (these APIs have one answer per request)."""
    choices = completion.get("choices")
    if isinstance(choices, list) and choices and isinstance(choices[0], dict):
        return choices[0]
    return {}


def usage_pair(usage: object) -> tuple[int, int]:
    """``(prompt_tokens, completion_tokens)`` of a chat usage object, 0 where absent."""
    if not isinstance(usage, dict):
        return 0, 0
    prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens")
    return (
        prompt if isinstance(prompt, int) else 0,
        completion if isinstance(completion, int) else 0,
    )


def cached_tokens(usage: object) -> int:
    """Prompt tokens the engine read from its prefix cache (vLLM reports them)."""
    details = usage.get("prompt_tokens_details") if isinstance(usage, dict) else None
    cached = details.get("cached_tokens") if isinstance(details, dict) else None
    return cached if isinstance(cached, int) else 0


def require(value: Any, param: str, kind: type | tuple[type, ...], expected: str) -> Any:
    """``value`` when it has the JSON type expected, else a 400 naming ``param``."""
    if not isinstance(value, kind) or (isinstance(value, bool) and bool not in _tuple(kind)):
        raise BadRequest(
            f"Invalid type for '{param}': expected {expected}.", param=param, code="invalid_type"
        )
    return value


def _tuple(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


def unsupported(param: str, why: str) -> BadRequest:
    return BadRequest(f"'{param}' is not supported by pilothouse: {why}", param=param,
                      code="unsupported_parameter")  # fmt: skip


class ChatChunks:
    """The engine's SSE byte stream read back into chat completion chunks.

    Chunks of bytes may split events anywhere; events are complete at a blank line.
    ``data: [DONE]`` and lines that are not JSON objects are skipped.
    """

    __slots__ = ("_buffer",)

    def __init__(self) -> None:
        self._buffer = b""

    def feed(self, data: bytes) -> Iterator[dict[str, Any]]:
        self._buffer += data
        if b"\r" in self._buffer:
            self._buffer = self._buffer.replace(b"\r\n", b"\n")
        *events, self._buffer = self._buffer.split(b"\n\n")
        for event in events:
            for line in event.split(b"\n"):
                if not line.startswith(b"data:"):
                    continue
                payload = line[5:].strip()
                if not payload.startswith(b"{"):
                    continue
                try:
                    chunk = orjson.loads(payload)
                except orjson.JSONDecodeError:
                    continue
                if isinstance(chunk, dict):
                    yield chunk
