"""OpenAI request parsing and response shaping for the simulator (no I/O).

Parsing validates what the simulator needs and raises :class:`BadRequest` /
:class:`ModelNotFound` naming the field; bodies and SSE chunks follow vLLM's OpenAI server:
a chat stream opens with a ``role`` delta, every engine step adds one chunk, the last token's
chunk carries ``finish_reason``, ``stream_options.include_usage`` adds a final chunk with
empty ``choices`` and ``usage``, and ``data: [DONE]`` closes the stream.

A chat request keeps its :class:`~pilothouse.servers.sim.script.Conversation` (roles, text,
offered tools) for scripted replies. Assistant messages with ``tool_calls`` and ``tool``
messages are accepted; their tool calls add no prompt tokens, as the gateway's prefix
hashing counts role and text only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from pilothouse.engines.tokenizer import ChatMessage, DummyTokenizer
from pilothouse.errors import BadRequest, ModelNotFound
from pilothouse.openai.tool_calls import conversation_key, offered_tools
from pilothouse.servers.sim.script import Conversation
from pilothouse.sim.types import FinishedRequest

DONE = b"data: [DONE]\n\n"


@dataclass(frozen=True, slots=True)
class CompletionCall:
    """A validated completion request: ``chat`` or ``completion`` kind."""

    kind: str
    model: str
    lora: str | None
    prompt_ids: tuple[int, ...]
    max_tokens: int | None
    stream: bool
    include_usage: bool
    conversation: Conversation | None = None
    """The chat's messages and offered tools (``None`` for ``/v1/completions``)."""

    @property
    def object_name(self) -> str:
        return "chat.completion" if self.kind == "chat" else "text_completion"


def parse_call(
    kind: str, raw: bytes, tokenizer: DummyTokenizer, served: str, loras: frozenset[str]
) -> CompletionCall:
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"request body is not valid JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise BadRequest("request body must be a JSON object")
    model = doc.get("model")
    if not isinstance(model, str):
        raise BadRequest("'model' must be a string", param="model")
    if model != served and model not in loras:
        raise ModelNotFound(
            f"The model `{model}` does not exist.", param="model", code="model_not_found"
        )
    conversation = None
    if kind == "chat":
        messages = _messages(doc.get("messages"))
        prompt_ids = tokenizer.encode(tokenizer.apply_chat_template(messages))
        conversation = Conversation(
            tuple(messages), offered_tools(doc.get("tools")), conversation_key(doc["messages"])
        )
    else:
        prompt_ids = _prompt_ids(doc.get("prompt"), tokenizer)
    if not prompt_ids:
        raise BadRequest("the prompt is empty", param="messages" if kind == "chat" else "prompt")
    if doc.get("n", 1) not in (1, None):
        raise BadRequest("the simulator supports n = 1 only", param="n")
    stream = _optional(doc, "stream", bool) or False
    options = _optional(doc, "stream_options", dict) or {}
    return CompletionCall(
        kind=kind,
        model=model,
        lora=None if model == served else model,
        prompt_ids=tuple(prompt_ids),
        max_tokens=_max_tokens(doc),
        stream=stream,
        include_usage=stream and bool(options.get("include_usage")),
        conversation=conversation,
    )


def _optional(doc: dict[str, Any], name: str, kind: type) -> Any:
    """``doc[name]`` when absent, null or of type ``kind`` (a bool is not an int here)."""
    value = doc.get(name)
    if value is None:
        return None
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        raise BadRequest(f"'{name}' must be a {kind.__name__}", param=name)
    return value


def _max_tokens(doc: dict[str, Any]) -> int | None:
    for name in ("max_tokens", "max_completion_tokens"):
        value = _optional(doc, name, int)
        if value is not None:
            if value < 1:
                raise BadRequest(f"'{name}' must be at least 1", param=name)
            return int(value)
    return None


def _messages(value: Any) -> list[ChatMessage]:
    if not isinstance(value, list) or not value:
        raise BadRequest("'messages' must be a non-empty list", param="messages")
    messages = []
    for index, item in enumerate(value):
        if not isinstance(item, dict) or not isinstance(item.get("role"), str):
            raise BadRequest(f"messages[{index}] needs a string 'role'", param="messages")
        messages.append(ChatMessage(item["role"], _content(item.get("content"), index)))
    return messages


def _content(content: Any, index: int) -> str:
    if content is None or isinstance(content, str):
        return content or ""
    if isinstance(content, list):
        parts = [p.get("text", "") for p in content if isinstance(p, dict)]
        if all(isinstance(part, str) for part in parts):
            return "".join(parts)
    raise BadRequest(f"messages[{index}].content must be a string or text parts", param="messages")


def _prompt_ids(prompt: Any, tokenizer: DummyTokenizer) -> list[int]:
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str | list):
        prompt = prompt[0]  # a batch of one
    if isinstance(prompt, str):
        return tokenizer.encode(prompt)
    if isinstance(prompt, list) and all(
        isinstance(t, int) and not isinstance(t, bool) and t >= 0 for t in prompt
    ):
        return list(prompt)
    raise BadRequest(
        "'prompt' must be a string or a list of token ids (batches are not supported)",
        param="prompt",
    )


def usage(finished: FinishedRequest) -> dict[str, Any]:
    return {
        "prompt_tokens": finished.prompt_tokens,
        "completion_tokens": finished.completion_tokens,
        "total_tokens": finished.prompt_tokens + finished.completion_tokens,
        "prompt_tokens_details": {"cached_tokens": finished.cached_tokens},
    }


def completion_body(
    call: CompletionCall,
    request_id: str,
    created: int,
    text: str,
    finished: FinishedRequest,
    *,
    message: dict[str, Any] | None = None,
    finish_reason: str | None = None,
) -> bytes:
    """A non-streamed response: ``text``, or a whole chat ``message`` (a scripted one, with
    its ``finish_reason``) when given."""
    if call.kind == "chat":
        message = message or {"role": "assistant", "content": text}
        choice: dict[str, Any] = {"index": 0, "message": message}
    else:
        choice = {"index": 0, "text": text}
    choice["logprobs"] = None
    choice["finish_reason"] = finish_reason or finished.finish_reason
    return orjson.dumps(
        {
            "id": request_id,
            "object": call.object_name,
            "created": created,
            "model": call.model,
            "choices": [choice],
            "usage": usage(finished),
        }
    )


def stream_chunk(
    call: CompletionCall,
    request_id: str,
    created: int,
    text: str | None,
    *,
    finish_reason: str | None = None,
    role: bool = False,
) -> bytes:
    """One SSE event with one choice (a ``role`` opener, text, or the final reason)."""
    if call.kind == "chat":
        delta: dict[str, Any] = {"role": "assistant", "content": ""} if role else {"content": text}
        return delta_chunk(call, request_id, created, delta, finish_reason)
    choice = {"index": 0, "text": text or "", "logprobs": None, "finish_reason": finish_reason}
    return _event(call, request_id, created, [choice])


def delta_chunk(
    call: CompletionCall,
    request_id: str,
    created: int,
    delta: dict[str, Any],
    finish_reason: str | None = None,
) -> bytes:
    """One chat SSE event carrying ``delta`` (content, tool calls, or ``{}``)."""
    choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
    return _event(call, request_id, created, [choice])


def usage_chunk(
    call: CompletionCall, request_id: str, created: int, finished: FinishedRequest
) -> bytes:
    return _event(call, request_id, created, [], usage(finished))


def _event(
    call: CompletionCall,
    request_id: str,
    created: int,
    choices: list[dict[str, Any]],
    usage_doc: dict[str, Any] | None = None,
) -> bytes:
    doc: dict[str, Any] = {
        "id": request_id,
        "object": f"{call.object_name}.chunk" if call.kind == "chat" else call.object_name,
        "created": created,
        "model": call.model,
        "choices": choices,
    }
    if usage_doc is not None:
        doc["usage"] = usage_doc
    return b"data: " + orjson.dumps(doc) + b"\n\n"
