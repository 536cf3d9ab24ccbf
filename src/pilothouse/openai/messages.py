"""The Anthropic Messages API (``POST /v1/messages``) served through chat completions.

A Messages request becomes a chat completions request: ``system`` the system message,
content blocks the messages (``text`` and ``image`` parts, an assistant's ``tool_use``
blocks its ``tool_calls``, a user's ``tool_result`` blocks ``tool`` messages), ``tools``
(``input_schema``) function tools, ``stop_sequences`` ``stop``. The chat completion comes
back as a Message (``text`` and ``tool_use`` blocks with their parsed ``input``,
``stop_reason`` ``end_turn``/``tool_use``/``max_tokens``/``stop_sequence``); a stream as
Anthropic's events (:mod:`pilothouse.openai.messages_stream`). Errors have Anthropic's
shape: ``{"type": "error", "error": {"type": "invalid_request_error", "message": …}}``.

Anthropic's server tools (web search, code execution, ``bash_…``, ``text_editor_…``) and
``document`` blocks are refused with a 400; ``thinking`` blocks of earlier turns and
``cache_control`` marks are dropped (the engine neither returns nor reuses them).
"""

from __future__ import annotations

from typing import Any

import orjson

from pilothouse.errors import BadRequest
from pilothouse.openai.translation import (
    ChatStream,
    first_choice,
    json_arguments,
    new_id,
    require,
    unsupported,
    usage_pair,
)

PATH = "/v1/messages"
_MAX_STOP = 4  # what engines' chat completions take (OpenAI's limit)
_STOP_REASONS = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use"}
#: Anthropic error types by status (https://docs.anthropic.com/en/api/errors).
_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    503: "overloaded_error",
}


class MessagesDialect:
    """``POST /v1/messages``: keys also as ``x-api-key``; errors in Anthropic's shape."""

    path = PATH
    accepts_x_api_key = True

    def translate(self, doc: dict[str, Any]) -> MessagesTranslation:
        return MessagesTranslation(doc)

    def error_body(
        self, status: int, message: str, error_type: str, param: str | None, code: str | None
    ) -> bytes:
        return anthropic_error(status, message)


def anthropic_error(status: int, message: str) -> bytes:
    kind = _ERROR_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")
    return orjson.dumps({"type": "error", "error": {"type": kind, "message": message}})


class MessagesTranslation:
    """One Messages request as a chat request, and its answers back as Messages."""

    def __init__(self, doc: dict[str, Any]) -> None:
        self.model: str = require(doc.get("model"), "model", str, "a string")
        if doc.get("max_tokens") is None:
            raise BadRequest("max_tokens: Field required", param="max_tokens",
                             code="missing_required_parameter")  # fmt: skip
        self.id = new_id("msg_")
        self.stop_sequences: list[str] = require(
            doc.get("stop_sequences") or [], "stop_sequences", list, "an array of strings"
        )
        if len(self.stop_sequences) > _MAX_STOP:
            raise unsupported("stop_sequences", f"engines take at most {_MAX_STOP}")
        messages = _system(doc.get("system"))
        turns = require(doc.get("messages"), "messages", list, "an array")
        if not turns:
            raise BadRequest("messages: at least one message is required", param="messages")
        for i, turn in enumerate(turns):
            messages += _turn(turn, f"messages.{i}")
        chat: dict[str, Any] = {
            "model": self.model,
            "messages": messages,
            "max_tokens": doc["max_tokens"],
        }
        for name in ("temperature", "top_p", "top_k", "stream"):
            if doc.get(name) is not None:
                chat[name] = doc[name]
        if self.stop_sequences:
            chat["stop"] = self.stop_sequences
        metadata = doc.get("metadata")
        if isinstance(metadata, dict) and isinstance(metadata.get("user_id"), str):
            chat["user"] = metadata["user_id"]
        tools = require(doc.get("tools") or [], "tools", list, "an array")
        if tools:
            chat["tools"] = [_tool(tool, f"tools.{i}") for i, tool in enumerate(tools)]
        if doc.get("tool_choice") is not None:
            chat.update(_tool_choice(doc["tool_choice"]))
        self.chat = chat

    def stop_reason(self, choice: dict[str, Any]) -> tuple[str, str | None]:
        """``(stop_reason, stop_sequence)`` for the engine's finish reason; vLLM names the
        stop string it met in ``stop_reason``."""
        finish = choice.get("finish_reason")
        matched = choice.get("stop_reason")
        if finish == "stop" and isinstance(matched, str) and matched in self.stop_sequences:
            return "stop_sequence", matched
        return _STOP_REASONS.get(finish if isinstance(finish, str) else "", "end_turn"), None

    def envelope(self, content: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": content,
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": 0, "output_tokens": 0},
        }

    def answer(self, completion: dict[str, Any]) -> dict[str, Any]:
        choice = first_choice(completion)
        message = choice.get("message")
        message = message if isinstance(message, dict) else {}
        content: list[dict[str, Any]] = []
        text = message.get("content")
        if isinstance(text, str) and text:
            content.append({"type": "text", "text": text})
        for call in message.get("tool_calls") or ():
            function = call.get("function") if isinstance(call, dict) else None
            if not isinstance(call, dict) or not isinstance(function, dict):
                continue
            content.append(
                {
                    "type": "tool_use",
                    "id": call.get("id") or new_id("toolu_"),
                    "name": function.get("name") or "",
                    "input": json_arguments(function.get("arguments") or ""),
                }
            )
        message_doc = self.envelope(content)
        message_doc["stop_reason"], message_doc["stop_sequence"] = self.stop_reason(choice)
        prompt, completion_tokens = usage_pair(completion.get("usage"))
        message_doc["usage"] = {"input_tokens": prompt, "output_tokens": completion_tokens}
        return message_doc

    def stream(self) -> ChatStream:
        from pilothouse.openai.messages_stream import MessagesStream

        return MessagesStream(self)


# -- the request ------------------------------------------------------------------------------


def _system(value: Any) -> list[dict[str, Any]]:
    if value is None:
        return []
    if isinstance(value, str):
        return [{"role": "system", "content": value}] if value else []
    blocks = require(value, "system", list, "a string or an array of text blocks")
    text = "\n".join(_text_block(b, f"system.{i}") for i, b in enumerate(blocks))
    return [{"role": "system", "content": text}] if text else []


def _text_block(block: Any, param: str) -> str:
    require(block, param, dict, "an object")
    if block.get("type") != "text":
        raise BadRequest(f"{param}.type: expected 'text'", param=f"{param}.type")
    text: str = require(block.get("text"), f"{param}.text", str, "a string")
    return text


def _turn(turn: Any, param: str) -> list[dict[str, Any]]:
    """Chat messages for one Messages turn: a user turn's tool results come first, as
    ``tool`` messages, then its other content as one user message."""
    require(turn, param, dict, "an object")
    role = turn.get("role")
    if role not in ("user", "assistant"):
        raise BadRequest(f"{param}.role: expected 'user' or 'assistant'", param=f"{param}.role",
                         code="invalid_value")  # fmt: skip
    content = turn.get("content")
    if isinstance(content, str):
        return [{"role": role, "content": content}]
    blocks = require(content, f"{param}.content", list, "a string or an array")
    parts: list[dict[str, Any]] = []
    calls: list[dict[str, Any]] = []
    results: list[dict[str, Any]] = []
    for j, block in enumerate(blocks):
        where = f"{param}.content.{j}"
        require(block, where, dict, "an object")
        kind = block.get("type")
        if kind == "text":
            parts.append({"type": "text", "text": _text_block(block, where)})
        elif kind == "image" and role == "user":
            parts.append(_image(block, where))
        elif kind == "tool_use" and role == "assistant":
            calls.append(_tool_use(block, where))
        elif kind == "tool_result" and role == "user":
            results.append(_tool_result(block, where))
        elif kind in ("thinking", "redacted_thinking") and role == "assistant":
            continue
        else:
            raise unsupported(f"{where}.type", f"'{kind}' blocks in {role} turns are not served")
    messages = results
    if role == "assistant":
        text = "".join(p["text"] for p in parts)
        if text or calls:
            message: dict[str, Any] = {"role": "assistant", "content": text or None}
            if calls:
                message["tool_calls"] = calls
            messages.append(message)
    elif parts:
        plain = all(p["type"] == "text" for p in parts)
        joined = "".join(p["text"] for p in parts) if plain else parts
        messages.append({"role": "user", "content": joined})
    return messages


def _image(block: dict[str, Any], param: str) -> dict[str, Any]:
    source = require(block.get("source"), f"{param}.source", dict, "an object")
    if source.get("type") == "base64":
        url = f"data:{source.get('media_type')};base64,{source.get('data')}"
    elif source.get("type") == "url" and isinstance(source.get("url"), str):
        url = source["url"]
    else:
        raise unsupported(f"{param}.source.type", "images are taken as base64 or url sources")
    return {"type": "image_url", "image_url": {"url": url}}


def _tool_use(block: dict[str, Any], param: str) -> dict[str, Any]:
    arguments = block.get("input", {})
    require(arguments, f"{param}.input", dict, "an object")
    try:
        text = orjson.dumps(arguments).decode()
    except orjson.JSONEncodeError as exc:
        raise BadRequest(f"{param}.input cannot be encoded: {exc}", param=f"{param}.input") from exc
    return {
        "id": require(block.get("id"), f"{param}.id", str, "a string"),
        "type": "function",
        "function": {
            "name": require(block.get("name"), f"{param}.name", str, "a string"),
            "arguments": text,
        },
    }


def _tool_result(block: dict[str, Any], param: str) -> dict[str, Any]:
    call_id = require(block.get("tool_use_id"), f"{param}.tool_use_id", str, "a string")
    content = block.get("content", "")
    if isinstance(content, list):  # text blocks (images in a result are not translated)
        texts = [b.get("text") for b in content if isinstance(b, dict) and b.get("type") == "text"]
        content = "".join(t for t in texts if isinstance(t, str))
    text = require(content, f"{param}.content", str, "a string or an array of blocks")
    if block.get("is_error"):
        text = f"Error: {text}"
    return {"role": "tool", "tool_call_id": call_id, "content": text}


def _tool(tool: Any, param: str) -> dict[str, Any]:
    require(tool, param, dict, "an object")
    kind = tool.get("type")
    if kind not in (None, "custom"):
        raise unsupported(f"{param}.type", f"'{kind}' is a server tool; only client tools "
                          "(name, description, input_schema) are served")  # fmt: skip
    function: dict[str, Any] = {
        "name": require(tool.get("name"), f"{param}.name", str, "a string"),
        "parameters": require(tool.get("input_schema"), f"{param}.input_schema", dict, "an object"),
    }
    if tool.get("description") is not None:
        function["description"] = tool["description"]
    return {"type": "function", "function": function}


def _tool_choice(value: Any) -> dict[str, Any]:
    require(value, "tool_choice", dict, "an object")
    chat: dict[str, Any] = {}
    kind = value.get("type")
    if kind == "auto":
        chat["tool_choice"] = "auto"
    elif kind == "any":
        chat["tool_choice"] = "required"
    elif kind == "none":
        chat["tool_choice"] = "none"
    elif kind == "tool" and isinstance(value.get("name"), str):
        chat["tool_choice"] = {"type": "function", "function": {"name": value["name"]}}
    else:
        raise unsupported("tool_choice.type", "expected 'auto', 'any', 'tool' or 'none'")
    if value.get("disable_parallel_tool_use") is True:
        chat["parallel_tool_calls"] = False
    return chat
