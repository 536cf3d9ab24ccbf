"""OpenAI tool calls on the wire: deterministic ids, message entries and stream deltas.

Shared by the engines that answer with tool calls (the simulator's scripted replies, the
embedded llama.cpp server). A chat completion's ``message.tool_calls`` is a list of
``{"id", "type": "function", "function": {"name", "arguments"}}`` with ``arguments`` a JSON
*string*; a stream sends, per call, a first ``delta.tool_calls`` entry with ``index``,
``id``, ``type`` and ``function.name``, then entries with ``index`` and argument fragments.

Ids are derived from the conversation so far (a hash of the request's messages) and the
call's position, so the same conversation yields the same ids in every run: agent tests
that replay a conversation get byte-identical requests.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

_ID_HEX = 24


@dataclass(frozen=True, slots=True)
class ToolCall:
    """One function call as the model made it; ``arguments`` is JSON text."""

    id: str
    name: str
    arguments: str

    def entry(self) -> dict[str, Any]:
        """The ``message.tool_calls[]`` entry."""
        return {
            "id": self.id,
            "type": "function",
            "function": {"name": self.name, "arguments": self.arguments},
        }


def conversation_key(messages: Sequence[Any]) -> bytes:
    """Canonical bytes of a request's messages (keys sorted), the seed of its call ids."""
    try:
        return orjson.dumps(list(messages), option=orjson.OPT_SORT_KEYS)
    except orjson.JSONEncodeError:  # nested deeper than orjson writes: fall back to repr
        return repr(messages).encode()


def tool_call_id(key: bytes, index: int) -> str:
    """``call_<24 hex>``: the same conversation and position give the same id."""
    digest = hashlib.sha256(key + b"\x00" + str(index).encode()).hexdigest()
    return f"call_{digest[:_ID_HEX]}"


def offered_tools(tools: Any) -> tuple[str, ...]:
    """Function names of a request's ``tools`` (entries of another shape are skipped)."""
    if not isinstance(tools, list):
        return ()
    names = []
    for tool in tools:
        function = tool.get("function") if isinstance(tool, Mapping) else None
        name = function.get("name") if isinstance(function, Mapping) else None
        if isinstance(name, str):
            names.append(name)
    return tuple(names)


def opening_delta(index: int, call: ToolCall, arguments: str = "") -> dict[str, Any]:
    """A stream's first ``delta.tool_calls[]`` entry of a call: id, type and name."""
    return {
        "index": index,
        "id": call.id,
        "type": "function",
        "function": {"name": call.name, "arguments": arguments},
    }


def arguments_delta(index: int, fragment: str) -> dict[str, Any]:
    """A later ``delta.tool_calls[]`` entry: the next fragment of the arguments."""
    return {"index": index, "function": {"arguments": fragment}}
