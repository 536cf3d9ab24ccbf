"""Request validation at the front door, following the OpenAI API reference.

Each route served has a table of its parameters (types, ranges, allowed values; roles and
content parts of chat messages; tools and tool choice) checked before anything reaches an
engine, so a request the OpenAI API rejects gets the same 400 here — with the parameter
path and OpenAI's error code — instead of a 502 relayed from an engine or a 500.

Parameters the tables do not name are left alone: engines take extra sampling parameters
(vLLM's ``top_k``, ``min_p``, ``repetition_penalty``, ...) and the gateway forwards the
client's bytes untouched.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pilothouse.errors import BadRequest
from pilothouse.openai.checks import (
    Check,
    any_of,
    array,
    boolean,
    integer,
    invalid_value,
    is_dict,
    is_int,
    is_list,
    is_str,
    members,
    number,
    obj,
    string,
)
from pilothouse.openai.routes import Route

ROLES = ("system", "developer", "user", "assistant", "tool", "function")
_FUNCTION_NAME = r"[A-Za-z0-9_-]{1,64}"

_text_part = obj({"text": string()}, required=("text",))
_PART_KINDS: Mapping[str, Check] = {
    "text": _text_part,
    "image_url": obj({"image_url": obj({"url": string()}, required=("url",))}, ("image_url",)),
    "input_audio": obj({"input_audio": obj({"data": string(), "format": string()})}),
    "file": obj({"file": obj()}),
    "refusal": obj({"refusal": string()}, required=("refusal",)),
}


def _part(value: Any, param: str) -> None:
    obj(required=("type",))(value, param)
    kind = value["type"]
    check = _PART_KINDS.get(kind) if isinstance(kind, str) else None
    if check is None:
        raise invalid_value(kind, f"{param}.type", tuple(_PART_KINDS))
    check(value, param)


_content = any_of("a string or an array", (is_str, string()), (is_list, array(_part)))
_function_call = obj({"name": string(), "arguments": string()}, required=("name",))
_tool_call = obj(
    {"id": string(), "type": string(("function",)), "function": _function_call},
    required=("function",),
)


_with_role = obj(required=("role",))
_role = string(ROLES)
_MESSAGE: Mapping[str, Check] = {"content": _content, "name": string()}
_ROLE_FIELDS: Mapping[str, tuple[Mapping[str, Check], tuple[str, ...]]] = {
    "assistant": ({**_MESSAGE, "tool_calls": array(_tool_call)}, ()),
    "tool": ({**_MESSAGE, "tool_call_id": string()}, ("content", "tool_call_id")),
}
_OTHER_ROLES = (_MESSAGE, ("content",))


def _message(value: Any, param: str) -> None:
    _with_role(value, param)
    role = value["role"]
    _role(role, f"{param}.role")
    fields, required = _ROLE_FIELDS.get(role, _OTHER_ROLES)
    members(value, fields, required, param)


_function = obj(
    {
        "name": string(pattern=_FUNCTION_NAME),
        "description": string(),
        "parameters": obj(),
        "strict": boolean,
    },
    required=("name",),
)
_tool = obj({"type": string(("function",)), "function": _function}, required=("type", "function"))
_tool_choice = any_of(
    "a string or an object",
    (is_str, string(("none", "auto", "required"))),
    (is_dict, obj({"type": string(("function",)), "function": obj({"name": string()})})),
)
_stop = any_of("a string or an array", (is_str, string()), (is_list, array(string(), max_items=4)))
_token_ids = array(integer(minimum=0), min_items=1)
_penalty = number(-2.0, 2.0)

_SAMPLING: Mapping[str, Check] = {
    "frequency_penalty": _penalty,
    "presence_penalty": _penalty,
    "logit_bias": obj(),
    "n": integer(1, 128),
    "seed": integer(),
    "stop": _stop,
    "stream": boolean,
    "stream_options": obj({"include_usage": boolean}),
    "temperature": number(0.0, 2.0),
    "top_p": number(0.0, 1.0),
    "user": string(),
}

CHAT: Mapping[str, Check] = {
    **_SAMPLING,
    "model": string(),
    "messages": array(_message, min_items=1),
    "max_tokens": integer(minimum=1),
    "max_completion_tokens": integer(minimum=1),
    "logprobs": boolean,
    "top_logprobs": integer(0, 20),
    "tools": array(_tool, max_items=128),
    "tool_choice": _tool_choice,
    "parallel_tool_calls": boolean,
    "response_format": obj(
        {"type": string(("text", "json_object", "json_schema")), "json_schema": obj()},
        required=("type",),
    ),
}

COMPLETIONS: Mapping[str, Check] = {
    **_SAMPLING,
    "model": string(),
    "prompt": any_of(
        "a string, an array of strings, or an array of token ids",
        (is_str, string()),
        (lambda v: is_list(v) and bool(v) and is_list(v[0]), array(_token_ids, min_items=1)),
        (lambda v: is_list(v) and bool(v) and is_int(v[0]), _token_ids),
        (is_list, array(string(), min_items=1)),
    ),
    "max_tokens": integer(minimum=0),
    "best_of": integer(1, 20),
    "echo": boolean,
    "logprobs": integer(0, 5),
    "suffix": string(),
}

EMBEDDINGS: Mapping[str, Check] = {
    "model": string(),
    "input": any_of(
        "a string or an array",
        (is_str, string()),
        (lambda v: is_list(v) and bool(v) and is_list(v[0]), array(_token_ids, min_items=1)),
        (lambda v: is_list(v) and bool(v) and is_int(v[0]), _token_ids),
        (is_list, array(string(), min_items=1, max_items=2048)),
    ),
    "encoding_format": string(("float", "base64")),
    "dimensions": integer(minimum=1),
    "user": string(),
}

_TABLES: Mapping[Route, tuple[Mapping[str, Check], tuple[str, ...]]] = {
    Route.CHAT: (CHAT, ("model", "messages")),
    Route.COMPLETIONS: (COMPLETIONS, ("model", "prompt")),
    Route.EMBEDDINGS: (EMBEDDINGS, ("model", "input")),
}


def validate(route: Route, doc: Any) -> None:
    """Raise :class:`BadRequest` (parameter path, OpenAI code) for a request the OpenAI
    API would reject on ``route``."""
    if not isinstance(doc, dict):
        raise BadRequest("request body must be a JSON object", code="invalid_type")
    fields, required = _TABLES[route]
    members(doc, fields, required, "")
