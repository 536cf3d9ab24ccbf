"""Reading usage out of OpenAI response bodies: whole JSON answers and SSE stream tails.

Shared by the gateway (which relays bytes itself) and the endpoint picker (which sees the
bytes Envoy relays). Only the tail of a stream is ever kept: engines send the usage chunk
last, just before ``data: [DONE]``.
"""

from __future__ import annotations

import orjson

TAIL_BYTES = 8192


def keep_tail(tail: bytes, chunk: bytes, limit: int = TAIL_BYTES) -> bytes:
    """The last ``limit`` bytes of ``tail + chunk``, without copying more than needed."""
    if len(chunk) >= limit:
        return chunk[-limit:]
    return (tail + chunk)[-limit:]


def json_usage(body: bytes) -> object:
    """The ``usage`` member of a JSON object body, or ``None``."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    return doc.get("usage") if isinstance(doc, dict) else None


def sse_usage(tail: bytes) -> object:
    """The usage object of the last SSE event that carries one."""
    for event in reversed(tail.split(b"\n\n")):
        data = event.strip()
        if data.startswith(b"data: {") and b'"usage"' in data:
            usage = json_usage(data[6:])
            if usage:
                return usage
    return None


def usage_counts(usage: object) -> tuple[int | None, int | None]:
    """``(prompt_tokens, completion_tokens)`` of a usage object; ``None`` where absent."""
    if not isinstance(usage, dict):
        return None, None
    prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens")
    return (
        prompt if isinstance(prompt, int) else None,
        completion if isinstance(completion, int) else None,
    )
