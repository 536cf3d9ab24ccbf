"""Parse what routing needs from an OpenAI request body, after validating all of it.

The gateway forwards the client's bytes untouched unless it must change them (asking a
streaming engine for usage data). Every parameter the OpenAI API reference defines for the
route is validated first (:mod:`pilothouse.openai.validation`): a bad request is a 400 with
the parameter's path and OpenAI's error code, never an engine's 502 or a 500.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from pilothouse.errors import BadRequest
from pilothouse.openai.routes import Route
from pilothouse.openai.validation import validate

# Rough characters-per-token ratio for English text with BPE tokenizers; only used to
# estimate load before the engine reports real counts.
_CHARS_PER_TOKEN = 4


@dataclass(frozen=True, slots=True)
class ParsedRequest:
    """The routing-relevant view of one request, plus the bytes to forward."""

    route: Route
    model: str
    prompt: str
    prompt_tokens: int
    stream: bool
    max_tokens: int | None
    user: str | None
    body: bytes


def parse_request(route: Route, raw: bytes) -> ParsedRequest:
    """Validate ``raw`` for ``route``; raise :class:`BadRequest` naming the bad field."""
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"request body is not valid JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise BadRequest("request body must be a JSON object")
    validate(route, doc)
    model = _field(doc, "model", str, required=True)
    prompt = _PROMPT_READERS[route](doc)
    stream = _field(doc, "stream", bool) or False
    max_tokens = _field(doc, "max_tokens", int)
    if max_tokens is None:
        max_tokens = _field(doc, "max_completion_tokens", int)
    user = _field(doc, "user", str)
    body = raw
    if stream and route is not Route.EMBEDDINGS:
        body = _with_usage_requested(doc, raw)
    return ParsedRequest(
        route=route,
        model=model,
        prompt=prompt,
        prompt_tokens=len(prompt) // _CHARS_PER_TOKEN + 1,
        stream=stream,
        max_tokens=max_tokens,
        user=user,
        body=body,
    )


def _field(doc: dict[str, Any], name: str, kind: type, *, required: bool = False) -> Any:
    value = doc.get(name)
    if value is None:
        if required:
            raise BadRequest(f"missing required field '{name}'", param=name)
        return None
    # bool is a subclass of int: a boolean is never a valid integer field.
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise BadRequest(
            f"field '{name}' must be of type {_TYPE_NAMES[kind]}, got {type(value).__name__}",
            param=name,
        )
    return value


_TYPE_NAMES = {str: "string", bool: "boolean", int: "integer", list: "array", dict: "object"}


def _chat_prompt(doc: dict[str, Any]) -> str:
    messages = doc.get("messages")
    if messages is None:
        raise BadRequest("missing required field 'messages'", param="messages")
    if not isinstance(messages, list) or not messages:
        raise BadRequest("field 'messages' must be a non-empty array", param="messages")
    parts: list[str] = []
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise BadRequest(
                f"field 'messages[{i}]' must be an object with a string 'role'",
                param=f"messages[{i}]",
            )
        parts.append(message["role"])
        parts.append(_content_text(message.get("content"), i))
    return "\n".join(parts)


def _content_text(content: Any, index: int) -> str:
    if content is None or isinstance(content, str):
        return content or ""
    if isinstance(content, list):  # multi-part content (validated): keep the text parts
        return "".join(part.get("text") or "" for part in content)
    raise BadRequest(
        f"field 'messages[{index}].content' must be a string or an array",
        param=f"messages[{index}].content",
    )


def _completion_prompt(doc: dict[str, Any]) -> str:
    prompt = doc.get("prompt")
    if prompt is None:
        raise BadRequest("missing required field 'prompt'", param="prompt")
    if isinstance(prompt, str):
        return prompt
    if isinstance(prompt, list) and all(isinstance(p, str) for p in prompt):
        return "\n".join(prompt)
    if isinstance(prompt, list) and all(isinstance(p, int) for p in prompt):
        return " ".join(map(str, prompt))  # token ids: still a stable prefix key
    if isinstance(prompt, list) and all(isinstance(p, list) for p in prompt):
        return "\n".join(" ".join(map(str, ids)) for ids in prompt)  # a batch of token ids
    raise BadRequest(
        "field 'prompt' must be a string, an array of strings or an array of token ids",
        param="prompt",
    )


def _embedding_input(doc: dict[str, Any]) -> str:
    value = doc.get("input")
    if value is None:
        raise BadRequest("missing required field 'input'", param="input")
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return "\n".join(v if isinstance(v, str) else str(v) for v in value)
    raise BadRequest("field 'input' must be a string or an array", param="input")


_PROMPT_READERS = {
    Route.CHAT: _chat_prompt,
    Route.COMPLETIONS: _completion_prompt,
    Route.EMBEDDINGS: _embedding_input,
}


def _with_usage_requested(doc: dict[str, Any], raw: bytes) -> bytes:
    """Ask the engine for a final usage chunk; re-encode only when the client did not."""
    options = doc.get("stream_options")
    if options is not None and not isinstance(options, dict):
        raise BadRequest("field 'stream_options' must be an object", param="stream_options")
    if options and options.get("include_usage") is True:
        return raw
    doc["stream_options"] = {**(options or {}), "include_usage": True}
    try:
        return orjson.dumps(doc)
    except orjson.JSONEncodeError as exc:  # e.g. nested deeper than orjson writes (254)
        raise BadRequest(f"request body cannot be re-encoded: {exc}", code="invalid_json") from exc


__all__ = ["ParsedRequest", "Route", "parse_request"]
