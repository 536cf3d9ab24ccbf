"""The OpenAI Responses API (``POST /v1/responses``) served through chat completions.

A Responses request becomes a chat completions request: ``instructions`` the system
message, ``input`` (a string, or items: messages, ``function_call`` and
``function_call_output``) the messages, function ``tools`` chat tools,
``max_output_tokens`` ``max_tokens``. The chat completion comes back as a Response
object (a ``message`` item with ``output_text``, one ``function_call`` item per tool
call, usage in input/output tokens); a stream comes back as Responses events
(:mod:`pilothouse.openai.responses_stream`).

What needs server-side state or server-run tools is refused with a 400 naming it:
``previous_response_id``, ``conversation``, ``background``, ``item_reference`` items and
built-in tools (web search, file search, ...). Responses are not stored.
"""

from __future__ import annotations

import time
from typing import Any

from pilothouse.errors import BadRequest
from pilothouse.openai.errors import error_body
from pilothouse.openai.translation import (
    ChatStream,
    cached_tokens,
    first_choice,
    new_id,
    require,
    unsupported,
    usage_pair,
)

PATH = "/v1/responses"
_ROLES = ("user", "assistant", "system", "developer")
_TEXT_PARTS = ("input_text", "output_text", "text", "summary_text")
_STATELESS = "pilothouse does not store responses; send the whole conversation in 'input'"
#: Request fields passed to the engine as they are (same name, same meaning).
_SAME = ("temperature", "top_p", "user", "parallel_tool_calls", "seed")


class ResponsesDialect:
    """``POST /v1/responses``, errors in OpenAI's shape."""

    path = PATH
    accepts_x_api_key = False

    def translate(self, doc: dict[str, Any]) -> ResponsesTranslation:
        return ResponsesTranslation(doc)

    def error_body(
        self, status: int, message: str, error_type: str, param: str | None, code: str | None
    ) -> bytes:
        return error_body(message, error_type, param=param, code=code)


class ResponsesTranslation:
    """One Responses request as a chat request, and its answers back as Responses."""

    def __init__(self, doc: dict[str, Any]) -> None:
        for name, why in (
            ("previous_response_id", _STATELESS),
            ("conversation", _STATELESS),
            ("prompt", "stored prompt templates are not served"),
        ):
            if doc.get(name) is not None:
                raise unsupported(name, why)
        if doc.get("background"):
            raise unsupported("background", "responses are answered in the request")
        self.request = doc
        self.model: str = require(doc.get("model"), "model", str, "a string")
        self.id = new_id("resp_")
        self.created_at = int(time.time())
        messages = input_messages(doc.get("input"))
        instructions = doc.get("instructions")
        if instructions is not None:
            text = require(instructions, "instructions", str, "a string")
            messages.insert(0, {"role": "system", "content": text})
        chat: dict[str, Any] = {"model": self.model, "messages": messages}
        for name in _SAME:
            if doc.get(name) is not None:
                chat[name] = doc[name]
        if doc.get("max_output_tokens") is not None:
            chat["max_tokens"] = doc["max_output_tokens"]
        if doc.get("stream") is not None:
            chat["stream"] = doc["stream"]
        tools = require(doc.get("tools") or [], "tools", list, "an array")
        if tools:
            chat["tools"] = [_tool(tool, f"tools[{i}]") for i, tool in enumerate(tools)]
        if doc.get("tool_choice") is not None:
            chat["tool_choice"] = _tool_choice(doc["tool_choice"])
        response_format = _response_format(doc.get("text"))
        if response_format is not None:
            chat["response_format"] = response_format
        self.chat = chat

    def envelope(self, status: str, output: list[dict[str, Any]]) -> dict[str, Any]:
        """The Response object around ``output``, echoing the request's settings."""
        doc = self.request
        return {
            "id": self.id,
            "object": "response",
            "created_at": self.created_at,
            "status": status,
            "error": None,
            "incomplete_details": None,
            "instructions": doc.get("instructions"),
            "max_output_tokens": doc.get("max_output_tokens"),
            "model": self.model,
            "output": output,
            "parallel_tool_calls": doc.get("parallel_tool_calls", True),
            "previous_response_id": None,
            "reasoning": doc.get("reasoning"),
            "store": False,
            "temperature": doc.get("temperature"),
            "text": doc.get("text") or {"format": {"type": "text"}},
            "tool_choice": doc.get("tool_choice", "auto"),
            "tools": doc.get("tools") or [],
            "top_p": doc.get("top_p"),
            "truncation": "disabled",
            "usage": None,
            "user": doc.get("user"),
            "metadata": doc.get("metadata") or {},
        }

    def finished(
        self, output: list[dict[str, Any]], finish_reason: object, usage: object
    ) -> dict[str, Any]:
        """The final Response: ``incomplete`` when the engine stopped at ``max_tokens``."""
        incomplete = finish_reason == "length"
        response = self.envelope("incomplete" if incomplete else "completed", output)
        if incomplete:
            response["incomplete_details"] = {"reason": "max_output_tokens"}
        response["usage"] = response_usage(usage)
        return response

    def answer(self, completion: dict[str, Any]) -> dict[str, Any]:
        choice = first_choice(completion)
        message = choice.get("message") if isinstance(choice.get("message"), dict) else {}
        assert isinstance(message, dict)
        output: list[dict[str, Any]] = []
        text = message.get("content")
        if isinstance(text, str) and text:
            output.append(message_item(new_id("msg_"), text, "completed"))
        for call in message.get("tool_calls") or ():
            function = call.get("function") if isinstance(call, dict) else None
            if not isinstance(call, dict) or not isinstance(function, dict):
                continue
            output.append(
                function_call_item(
                    new_id("fc_"),
                    call.get("id") or new_id("call_"),
                    function.get("name") or "",
                    function.get("arguments") or "",
                    "completed",
                )
            )
        return self.finished(output, choice.get("finish_reason"), completion.get("usage"))

    def stream(self) -> ChatStream:
        from pilothouse.openai.responses_stream import ResponsesStream

        return ResponsesStream(self)


def message_item(item_id: str, text: str, status: str) -> dict[str, Any]:
    return {
        "type": "message",
        "id": item_id,
        "status": status,
        "role": "assistant",
        "content": [output_text(text)] if status == "completed" else [],
    }


def output_text(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def function_call_item(
    item_id: str, call_id: str, name: str, arguments: str, status: str
) -> dict[str, Any]:
    return {
        "type": "function_call",
        "id": item_id,
        "call_id": call_id,
        "name": name,
        "arguments": arguments,
        "status": status,
    }


def response_usage(usage: object) -> dict[str, Any]:
    prompt, completion = usage_pair(usage)
    return {
        "input_tokens": prompt,
        "input_tokens_details": {"cached_tokens": cached_tokens(usage), "cache_write_tokens": 0},
        "output_tokens": completion,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": prompt + completion,
    }


# -- the request ------------------------------------------------------------------------------


def input_messages(value: Any) -> list[dict[str, Any]]:
    """Chat messages for a Responses ``input`` (a string, or a list of items)."""
    if isinstance(value, str):
        return [{"role": "user", "content": value}]
    items = require(value, "input", list, "a string or an array")
    if not items:
        raise BadRequest("'input' must not be empty.", param="input", code="empty_array")
    messages: list[dict[str, Any]] = []
    for i, item in enumerate(items):
        param = f"input[{i}]"
        require(item, param, dict, "an object")
        kind = item.get("type", "message")
        if kind == "message":
            messages.append(_message(item, param))
        elif kind == "function_call":
            _add_tool_call(messages, item, param)
        elif kind == "function_call_output":
            call_id = require(item.get("call_id"), f"{param}.call_id", str, "a string")
            output = _text_of(item.get("output"), f"{param}.output")
            messages.append({"role": "tool", "tool_call_id": call_id, "content": output})
        elif kind == "reasoning":
            continue  # an earlier answer's reasoning: the engine re-reasons from the messages
        elif kind == "item_reference":
            raise unsupported(f"{param}.type", _STATELESS)
        else:
            raise unsupported(f"{param}.type", f"'{kind}' items need tools pilothouse does not run")
    if not messages:
        raise BadRequest("'input' has no message to answer.", param="input")
    return messages


def _message(item: dict[str, Any], param: str) -> dict[str, Any]:
    role = item.get("role")
    if role not in _ROLES:
        raise BadRequest(
            f"Invalid value for '{param}.role': expected one of {', '.join(_ROLES)}.",
            param=f"{param}.role",
            code="invalid_value",
        )
    content = item.get("content")
    if isinstance(content, str):
        return {"role": role, "content": content}
    parts = require(content, f"{param}.content", list, "a string or an array")
    chat_parts: list[dict[str, Any]] = []
    for j, part in enumerate(parts):
        where = f"{param}.content[{j}]"
        require(part, where, dict, "an object")
        kind = part.get("type")
        if kind in _TEXT_PARTS:
            text = require(part.get("text"), f"{where}.text", str, "a string")
            chat_parts.append({"type": "text", "text": text})
        elif kind == "refusal":
            chat_parts.append({"type": "text", "text": str(part.get("refusal") or "")})
        elif kind == "input_image" and isinstance(part.get("image_url"), str):
            chat_parts.append({"type": "image_url", "image_url": {"url": part["image_url"]}})
        else:
            raise unsupported(f"{where}.type", f"'{kind}' content is not translated")
    if role != "user" or all(p["type"] == "text" for p in chat_parts):
        # Only user messages take non-text parts in chat; others are joined to one text.
        return {"role": role, "content": "".join(p.get("text", "") for p in chat_parts)}
    return {"role": role, "content": chat_parts}


def _add_tool_call(messages: list[dict[str, Any]], item: dict[str, Any], param: str) -> None:
    """A ``function_call`` item joins the assistant message just before it, or starts one."""
    call = {
        "id": require(item.get("call_id"), f"{param}.call_id", str, "a string"),
        "type": "function",
        "function": {
            "name": require(item.get("name"), f"{param}.name", str, "a string"),
            "arguments": require(item.get("arguments", ""), f"{param}.arguments", str, "a string"),
        },
    }
    last = messages[-1] if messages else None
    if last is not None and last["role"] == "assistant":
        last.setdefault("tool_calls", []).append(call)
    else:
        messages.append({"role": "assistant", "content": None, "tool_calls": [call]})


def _text_of(value: Any, param: str) -> str:
    """A tool's output: a string, or output parts whose text is joined."""
    if isinstance(value, str):
        return value
    parts = require(value, param, list, "a string or an array")
    texts = [p.get("text") for p in parts if isinstance(p, dict)]
    return "".join(t for t in texts if isinstance(t, str))


def _tool(tool: Any, param: str) -> dict[str, Any]:
    require(tool, param, dict, "an object")
    kind = tool.get("type")
    if kind != "function":
        raise unsupported(
            f"{param}.type", f"'{kind}' is a built-in tool; only 'function' tools are served"
        )
    function: dict[str, Any] = {"name": require(tool.get("name"), f"{param}.name", str, "a string")}
    for name in ("description", "parameters", "strict"):
        if tool.get(name) is not None:
            function[name] = tool[name]
    return {"type": "function", "function": function}


def _tool_choice(value: Any) -> Any:
    if isinstance(value, str):
        return value
    require(value, "tool_choice", dict, "a string or an object")
    if value.get("type") == "function" and isinstance(value.get("name"), str):
        return {"type": "function", "function": {"name": value["name"]}}
    if value.get("type") == "allowed_tools" and value.get("mode") in ("auto", "required"):
        return value["mode"]
    raise unsupported("tool_choice", "only 'auto', 'none', 'required' or a function are served")


def _response_format(text: Any) -> dict[str, Any] | None:
    """``text.format`` as chat's ``response_format`` (``None`` for plain text)."""
    if text is None:
        return None
    fmt = require(text, "text", dict, "an object").get("format")
    if fmt is None:
        return None
    kind = require(fmt, "text.format", dict, "an object").get("type")
    if kind in (None, "text"):
        return None
    if kind == "json_object":
        return {"type": "json_object"}
    if kind == "json_schema":
        schema = {k: fmt[k] for k in ("name", "schema", "strict", "description") if k in fmt}
        return {"type": "json_schema", "json_schema": schema}
    raise unsupported("text.format.type", f"'{kind}' is not a format pilothouse translates")
