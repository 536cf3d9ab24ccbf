"""A streamed chat completion turned into the Responses API's events.

The events, each numbered by ``sequence_number``, as OpenAI sends them:
``response.created`` and ``response.in_progress`` first; for text, a ``message`` item
(``response.output_item.added``, ``response.content_part.added``, one
``response.output_text.delta`` per chunk, then ``…output_text.done``,
``…content_part.done``, ``…output_item.done``); for each tool call, a ``function_call``
item (``…output_item.added``, ``response.function_call_arguments.delta`` per fragment,
``…arguments.done``, ``…output_item.done``); last ``response.completed`` (or
``response.incomplete`` when the engine stopped at ``max_tokens``) carrying the whole
Response and its usage.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pilothouse.openai.responses import function_call_item, message_item, output_text
from pilothouse.openai.translation import new_id, sse_event

if TYPE_CHECKING:
    from pilothouse.openai.responses import ResponsesTranslation


@dataclass(slots=True)
class _Item:
    """One output item being streamed: a message's text or a tool call's arguments."""

    kind: str  # "message" | "function_call"
    item_id: str
    index: int
    text: list[str] = field(default_factory=list)
    call_id: str = ""
    name: str = ""
    done: bool = False


class ResponsesStream:
    """Feeds on chat chunks, yields Responses SSE events (see the module docstring)."""

    def __init__(self, translation: ResponsesTranslation) -> None:
        self._translation = translation
        self._sequence = 0
        self._items: list[_Item] = []
        self._text: _Item | None = None
        self._calls: dict[int, _Item] = {}
        self._finish_reason: object = None
        self._usage: object = None
        self._begun = False

    def feed(self, chunk: dict[str, Any]) -> bytes:
        out = self._begin()
        if chunk.get("usage"):
            self._usage = chunk["usage"]
        for choice in chunk.get("choices") or ():
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                continue
            if choice.get("finish_reason"):
                self._finish_reason = choice["finish_reason"]
            delta = choice.get("delta")
            if not isinstance(delta, dict):
                continue
            text = delta.get("content")
            if isinstance(text, str) and text:
                out += self._text_delta(text)
            for call in delta.get("tool_calls") or ():
                if isinstance(call, dict):
                    out += self._call_delta(call)
        return out

    def finish(self) -> bytes:
        out = self._begin()
        for item in self._items:
            out += self._close(item)
        final = self._translation.finished(
            [self._final(item) for item in self._items], self._finish_reason, self._usage
        )
        kind = "response.completed" if final["status"] == "completed" else "response.incomplete"
        return out + self._event(kind, {"response": final})

    def fail(self, message: str) -> bytes:
        out = self._begin()
        out += self._event("error", {"code": "server_error", "message": message, "param": None})
        failed = self._translation.envelope("failed", [self._final(i) for i in self._items])
        failed["error"] = {"code": "server_error", "message": message}
        return out + self._event("response.failed", {"response": failed})

    # -- events ----------------------------------------------------------------------------

    def _event(self, kind: str, data: dict[str, Any]) -> bytes:
        event = sse_event(kind, {"type": kind, "sequence_number": self._sequence, **data})
        self._sequence += 1
        return event

    def _begin(self) -> bytes:
        if self._begun:
            return b""
        self._begun = True
        response = self._translation.envelope("in_progress", [])
        return self._event("response.created", {"response": response}) + self._event(
            "response.in_progress", {"response": response}
        )

    def _text_delta(self, text: str) -> bytes:
        out = b""
        item = self._text
        if item is None:
            item = self._text = self._open("message", new_id("msg_"))
            out += self._event(
                "response.output_item.added",
                {"output_index": item.index, "item": message_item(item.item_id, "", "in_progress")},
            )
            out += self._event("response.content_part.added", {**self._where(item),
                               "content_index": 0, "part": output_text("")})  # fmt: skip
        item.text.append(text)
        return out + self._event(
            "response.output_text.delta",
            {**self._where(item), "content_index": 0, "delta": text, "logprobs": []},
        )

    def _call_delta(self, call: dict[str, Any]) -> bytes:
        out = b""
        position = call.get("index", 0)
        function = call.get("function") if isinstance(call.get("function"), dict) else {}
        assert isinstance(function, dict)
        item = self._calls.get(position)
        if item is None:
            if self._text is not None:  # text before a tool call: that message is complete
                out += self._close(self._text)
                self._text = None
            item = self._open("function_call", new_id("fc_"))
            item.call_id = call.get("id") or new_id("call_")
            item.name = function.get("name") or ""
            self._calls[position] = item
            added = function_call_item(item.item_id, item.call_id, item.name, "", "in_progress")
            out += self._event(
                "response.output_item.added", {"output_index": item.index, "item": added}
            )
        arguments = function.get("arguments")
        if isinstance(arguments, str) and arguments:
            item.text.append(arguments)
            out += self._event(
                "response.function_call_arguments.delta", {**self._where(item), "delta": arguments}
            )
        return out

    def _open(self, kind: str, item_id: str) -> _Item:
        item = _Item(kind, item_id, len(self._items))
        self._items.append(item)
        return item

    def _close(self, item: _Item) -> bytes:
        if item.done:
            return b""
        item.done = True
        text = "".join(item.text)
        where = self._where(item)
        out = b""
        if item.kind == "message":
            part = {**where, "content_index": 0}
            out += self._event("response.output_text.done", {**part, "text": text, "logprobs": []})
            out += self._event("response.content_part.done", {**part, "part": output_text(text)})
        else:
            done = {**where, "name": item.name, "arguments": text}
            out += self._event("response.function_call_arguments.done", done)
        return out + self._event(
            "response.output_item.done", {"output_index": item.index, "item": self._final(item)}
        )

    @staticmethod
    def _where(item: _Item) -> dict[str, Any]:
        return {"item_id": item.item_id, "output_index": item.index}

    @staticmethod
    def _final(item: _Item) -> dict[str, Any]:
        text = "".join(item.text)
        if item.kind == "message":
            return message_item(item.item_id, text, "completed")
        return function_call_item(item.item_id, item.call_id, item.name, text, "completed")
