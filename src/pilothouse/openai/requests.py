"""Parse what routing needs from an OpenAI request body, after validating all of it.

The gateway forwards the client's bytes untouched unless it must change them (asking a
streaming engine for usage data). Every parameter the OpenAI API reference defines for the
route is validated first (:mod:`pilothouse.openai.validation`): a bad request is a 400 with
the parameter's path and OpenAI's error code, never an engine's 502 or a 500.
"""

from __future__ import annotations

from typing import Any

import orjson

from pilothouse.errors import BadRequest
from pilothouse.openai.routes import Route
from pilothouse.openai.validation import validate
from pilothouse.values import value

# Rough characters-per-token ratio for English text with BPE tokenizers; only used to
# estimate load before the engine reports real counts.
_CHARS_PER_TOKEN = 4


@value
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
    validate(route, doc)  # every field read below has its type and shape checked here
    prompt = _PROMPT_READERS[route](doc)
    stream = bool(doc.get("stream"))
    max_tokens = doc.get("max_tokens")
    if max_tokens is None:
        max_tokens = doc.get("max_completion_tokens")
    body = raw
    if stream and route is not Route.EMBEDDINGS:
        body = _with_usage_requested(doc, raw)
    return ParsedRequest(
        route=route,
        model=doc["model"],
        prompt=prompt,
        prompt_tokens=len(prompt) // _CHARS_PER_TOKEN + 1,
        stream=stream,
        max_tokens=max_tokens,
        user=doc.get("user"),
        body=body,
    )


# The readers below take validated documents: they only flatten the prompt to text.


def _chat_prompt(doc: dict[str, Any]) -> str:
    parts: list[str] = []
    for message in doc["messages"]:
        parts.append(message["role"])
        parts.append(_content_text(message.get("content")))
    return "\n".join(parts)


def _content_text(content: str | list[dict[str, Any]] | None) -> str:
    if content is None or isinstance(content, str):
        return content or ""
    return "".join(part.get("text") or "" for part in content)  # text parts of a multi-part


def _completion_prompt(doc: dict[str, Any]) -> str:
    return _flatten(doc["prompt"])


def _embedding_input(doc: dict[str, Any]) -> str:
    value = doc["input"]
    if isinstance(value, str):
        return value
    return "\n".join(v if isinstance(v, str) else str(v) for v in value)


def _flatten(value: str | list[Any]) -> str:
    """A prompt as text (a stable prefix key): a string, strings one per line, token ids,
    or batches of token ids one per line."""
    if isinstance(value, str):
        return value
    if value and isinstance(value[0], list):
        return "\n".join(" ".join(map(str, ids)) for ids in value)
    if value and isinstance(value[0], int):
        return " ".join(map(str, value))
    return "\n".join(value)


_PROMPT_READERS = {
    Route.CHAT: _chat_prompt,
    Route.COMPLETIONS: _completion_prompt,
    Route.EMBEDDINGS: _embedding_input,
}


def _with_usage_requested(doc: dict[str, Any], raw: bytes) -> bytes:
    """Ask the engine for a final usage chunk; re-encode only when the client did not."""
    options = doc.get("stream_options")  # validated: an object or absent
    if options and options.get("include_usage") is True:
        return raw
    doc["stream_options"] = {**(options or {}), "include_usage": True}
    try:
        return orjson.dumps(doc)
    except orjson.JSONEncodeError as exc:  # e.g. nested deeper than orjson writes (254)
        raise BadRequest(f"request body cannot be re-encoded: {exc}", code="invalid_json") from exc


__all__ = ["ParsedRequest", "Route", "parse_request"]
