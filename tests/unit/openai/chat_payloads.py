"""Chat completion answers as engines send them, whole and streamed, for the translators."""

from __future__ import annotations

from typing import Any

import orjson

USAGE = {"prompt_tokens": 12, "completion_tokens": 7, "total_tokens": 19}


def completion(
    content: str | None = None,
    tool_calls: list[dict[str, Any]] | None = None,
    finish_reason: str = "stop",
    **choice: Any,
) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if tool_calls is not None:
        message["tool_calls"] = tool_calls
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1,
        "model": "m",
        "choices": [{"index": 0, "message": message, "finish_reason": finish_reason, **choice}],
        "usage": USAGE,
    }


def tool_call(call_id: str, name: str, arguments: str) -> dict[str, Any]:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "m",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
    }


USAGE_CHUNK = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "choices": [], "usage": USAGE}


def text_chunks(*pieces: str, finish_reason: str = "stop") -> list[dict[str, Any]]:
    chunks = [chunk({"role": "assistant", "content": ""})]
    chunks += [chunk({"content": p}) for p in pieces]
    return [*chunks, chunk({}, finish_reason), USAGE_CHUNK]


def tool_chunks(text: str = "") -> list[dict[str, Any]]:
    """Some text, then two tool calls streamed as OpenAI does: id, type and name in a
    call's first delta (with ``index``), its arguments in fragments after."""
    chunks = [chunk({"role": "assistant", "content": text})] if text else []
    for index, (call_id, name, fragments) in enumerate(
        (("call_a", "get_weather", ['{"ci', 'ty": "Pa', 'ris"}']), ("call_b", "get_time", ["{}"]))
    ):
        first = {
            "index": index,
            "id": call_id,
            "type": "function",
            "function": {"name": name, "arguments": ""},
        }
        chunks.append(chunk({"tool_calls": [first]}))
        chunks += [
            chunk({"tool_calls": [{"index": index, "function": {"arguments": f}}]})
            for f in fragments
        ]
    return [*chunks, chunk({}, "tool_calls"), USAGE_CHUNK]


def sse(chunks: list[dict[str, Any]]) -> bytes:
    """The chunks as the engine's SSE bytes, ending with ``[DONE]``."""
    return b"".join(b"data: " + orjson.dumps(c) + b"\n\n" for c in chunks) + b"data: [DONE]\n\n"


def events(data: bytes) -> list[tuple[str, dict[str, Any]]]:
    """``(event name, data)`` of each SSE event a translator wrote."""
    parsed = []
    for block in data.split(b"\n\n"):
        if not block.strip():
            continue
        name_line, data_line = block.split(b"\n")
        assert name_line.startswith(b"event: ")
        assert data_line.startswith(b"data: ")
        parsed.append((name_line[7:].decode(), orjson.loads(data_line[6:])))
    return parsed
