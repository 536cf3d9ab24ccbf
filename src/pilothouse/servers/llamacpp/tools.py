"""Tool calls from a small local model, through grammar-constrained JSON (no I/O).

A chat request that offers ``tools`` is answered with a tool call when the model should
call one: the prompt gains a system note listing the tools, and sampling is constrained by
a grammar built from a JSON schema — one alternative per callable tool,
``{"name": <that tool>, "arguments": <its parameters schema>}`` — so even the embedded
135M-parameter model writes a well-formed call whose arguments match the schema. The
output is parsed and returned as OpenAI ``tool_calls`` (:func:`as_tool_call`, or in a stream
:func:`tool_call_chunks`).

When to call a tool instead of answering in text, by ``tool_choice``:

- ``"none"``: text.
- ``{"type": "function", "function": {"name": X}}``: a call of ``X``.
- ``"required"``: a call of one of the tools (the model picks which).
- ``"auto"`` (the default): a call when the last message is the user's, text otherwise
  (typically after a ``tool`` result, to turn it into the answer).

Why not let the model choose under ``"auto"`` (a schema that also allows ``{"answer": ...}``):
a model this small answers from its own knowledge almost every time, so a simple tool task
would never reach its tool. The rule above makes the usual loop — user asks, model calls,
tool answers, model replies — work with it; a larger model served elsewhere keeps its own
judgement. One call per answer (no parallel calls).

Messages are also made renderable for any chat template: text parts joined, ``null``
content as empty text, and an assistant's earlier tool calls written into its content as
the same JSON the grammar produces.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncGenerator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pilothouse.errors import BadRequest
from pilothouse.openai.tool_calls import ToolCall, opening_delta, tool_call_id

_ANY_OBJECT: dict[str, Any] = {"type": "object"}


@dataclass(frozen=True, slots=True)
class ToolPlan:
    """The tools the answer must call one of, each with its parameters schema."""

    tools: tuple[tuple[str, dict[str, Any]], ...]

    def schema(self, *, typed_arguments: bool = True) -> dict[str, Any]:
        """The JSON schema of one call; ``typed_arguments=False`` allows any object as
        arguments (for parameter schemas the grammar converter cannot express)."""
        options = [
            {
                "type": "object",
                "properties": {
                    "name": {"const": name},
                    "arguments": parameters if typed_arguments else _ANY_OBJECT,
                },
                "required": ["name", "arguments"],
            }
            for name, parameters in self.tools
        ]
        return options[0] if len(options) == 1 else {"anyOf": options}

    def instructions(self) -> str:
        """The system note that tells the model which tools exist and how to call one."""
        listing = [{"name": name, "parameters": parameters} for name, parameters in self.tools]
        return (
            "You can call these tools:\n"
            + json.dumps(listing)
            + '\nTo call a tool, reply with {"name": <tool name>, "arguments": {...}}.'
        )


def tool_plan(doc: Mapping[str, Any]) -> ToolPlan | None:
    """The tools this chat request's answer must call one of, or ``None`` for text."""
    offered = _offered(doc.get("tools"))
    choice = doc.get("tool_choice") or "auto"
    if not offered or choice == "none":
        return None
    if isinstance(choice, Mapping):
        name = (choice.get("function") or {}).get("name")
        if name not in offered:
            raise BadRequest(
                f"tool_choice names '{name}', not an offered tool", param="tool_choice"
            )
        return ToolPlan(((name, offered[name]),))
    if choice == "auto":
        messages = doc.get("messages")
        last = messages[-1] if isinstance(messages, list) and messages else None
        if not isinstance(last, Mapping) or last.get("role") != "user":
            return None
    return ToolPlan(tuple(offered.items()))


def _offered(tools: Any) -> dict[str, dict[str, Any]]:
    """Name → parameters schema of each offered function (``{"type": "object"}`` if none)."""
    if tools is None:
        return {}
    if not isinstance(tools, list):
        raise BadRequest("'tools' must be a list", param="tools")
    offered: dict[str, dict[str, Any]] = {}
    for index, tool in enumerate(tools):
        function = tool.get("function") if isinstance(tool, Mapping) else None
        name = function.get("name") if isinstance(function, Mapping) else None
        if not isinstance(name, str):
            raise BadRequest(f"tools[{index}].function.name must be a string", param="tools")
        parameters = function.get("parameters") if isinstance(function, Mapping) else None
        offered[name] = dict(parameters) if isinstance(parameters, Mapping) else _ANY_OBJECT
    return offered


def model_messages(messages: Sequence[Any], plan: ToolPlan | None) -> list[dict[str, str]]:
    """``messages`` as a chat template can render them, with the tool note when calling."""
    out = [_renderable(message, index) for index, message in enumerate(messages)]
    if plan is not None:
        note = plan.instructions()
        if out and out[0]["role"] == "system":
            out[0] = {"role": "system", "content": f"{out[0]['content']}\n\n{note}"}
        else:
            out.insert(0, {"role": "system", "content": note})
    return out


def _renderable(message: Any, index: int) -> dict[str, str]:
    if not isinstance(message, Mapping) or not isinstance(message.get("role"), str):
        raise BadRequest(f"messages[{index}] needs a string 'role'", param="messages")
    content = message.get("content")
    if isinstance(content, list):
        content = "".join(p.get("text") or "" for p in content if isinstance(p, Mapping))
    text = content if isinstance(content, str) else ""
    calls = message.get("tool_calls") or ()
    written = [_written_call(call) for call in calls if isinstance(call, Mapping)]
    return {"role": message["role"], "content": "\n".join(filter(None, [text, *written]))}


def _written_call(call: Mapping[str, Any]) -> str:
    function = call.get("function") or {}
    arguments = function.get("arguments") or "{}"
    try:
        parsed = json.loads(arguments)
    except (TypeError, ValueError):
        parsed = arguments
    return json.dumps({"name": function.get("name"), "arguments": parsed})


def parse_call(text: str, key: bytes) -> ToolCall | None:
    """The call the model wrote (``None`` if the text is not one, e.g. cut by
    ``max_tokens``); its id derives from the conversation ``key``."""
    try:
        doc = json.loads(text)
    except ValueError:
        return None
    if not isinstance(doc, dict) or not isinstance(doc.get("name"), str):
        return None
    arguments = doc.get("arguments")
    if not isinstance(arguments, dict):
        return None
    compact = json.dumps(arguments, separators=(",", ":"), ensure_ascii=False)
    return ToolCall(tool_call_id(key, 0), doc["name"], compact)


def grammar(plan: ToolPlan) -> Any:
    """The grammar of one call of ``plan``'s tools; parameter schemas that llama.cpp's
    converter cannot express fall back to "any JSON object" as arguments."""
    from llama_cpp.llama_grammar import LlamaGrammar

    try:
        return LlamaGrammar.from_json_schema(json.dumps(plan.schema()), verbose=False)
    except (AssertionError, ValueError, KeyError, TypeError):  # the converter's failures
        loose = plan.schema(typed_arguments=False)
        return LlamaGrammar.from_json_schema(json.dumps(loose), verbose=False)


def as_tool_call(choice: dict[str, Any], key: bytes) -> None:
    """Turn a non-streamed choice whose content is the model's call into ``tool_calls``;
    text that is not a whole call (cut by ``max_tokens``) stays content."""
    message = choice["message"]
    call = parse_call(message.get("content") or "", key)
    if call is None:
        return
    message["content"] = None
    message["tool_calls"] = [call.entry()]
    if choice.get("finish_reason") == "stop":
        choice["finish_reason"] = "tool_calls"


async def tool_call_chunks(
    chunks: AsyncGenerator[dict[str, Any], None], key: bytes
) -> AsyncGenerator[dict[str, Any], None]:
    """A chat stream whose content is a call: content deltas are held back, and the
    finishing chunk becomes the call's ``delta.tool_calls`` entry with its reason."""
    text = ""
    async with contextlib.aclosing(chunks):
        async for chunk in chunks:
            choices = chunk.get("choices") or [{}]
            delta, reason = choices[0].get("delta") or {}, choices[0].get("finish_reason")
            if "role" in delta:
                yield chunk  # the opening role chunk
                continue
            text += delta.get("content") or ""
            if reason is None:
                continue
            call = parse_call(text, key)
            if call is None:
                choices[0]["delta"] = {"content": text}  # not a whole call: send the text
            else:
                choices[0]["delta"] = {"tool_calls": [opening_delta(0, call, call.arguments)]}
                if reason == "stop":
                    choices[0]["finish_reason"] = "tool_calls"
            yield chunk
