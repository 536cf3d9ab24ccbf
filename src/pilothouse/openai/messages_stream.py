"""A streamed chat completion turned into the Anthropic Messages API's events.

``message_start`` (the Message, empty) and a ``ping`` first; then one content block per
text run or tool call: ``content_block_start``, ``content_block_delta`` (``text_delta``,
or ``input_json_delta`` carrying the tool arguments' JSON fragments as the engine sends
them), ``content_block_stop``; last ``message_delta`` (``stop_reason`` and the usage:
output tokens, and input tokens, which engines report only at the end) and
``message_stop``. A stream that breaks ends with an ``error`` event.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pilothouse.openai.translation import new_id, sse_event, usage_pair

if TYPE_CHECKING:
    from pilothouse.openai.messages import MessagesTranslation


class MessagesStream:
    """Feeds on chat chunks, yields Anthropic SSE events (see the module docstring)."""

    def __init__(self, translation: MessagesTranslation) -> None:
        self._translation = translation
        self._blocks = 0
        self._open: int | None = None
        """The index of the block being streamed, if any."""
        self._text_open = False
        self._calls: dict[int, int] = {}
        """Chat tool call index → content block index."""
        self._choice: dict[str, Any] = {}
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
                self._choice = choice
            delta = choice.get("delta")
            if not isinstance(delta, dict):
                continue
            text = delta.get("content")
            if isinstance(text, str) and text:
                out += self._text(text)
            for call in delta.get("tool_calls") or ():
                if isinstance(call, dict):
                    out += self._call(call)
        return out

    def finish(self) -> bytes:
        out = self._begin() + self._stop()
        stop_reason, stop_sequence = self._translation.stop_reason(self._choice)
        prompt, completion = usage_pair(self._usage)
        out += self._event(
            "message_delta",
            {
                "delta": {"stop_reason": stop_reason, "stop_sequence": stop_sequence},
                "usage": {"input_tokens": prompt, "output_tokens": completion},
            },
        )
        return out + self._event("message_stop", {})

    def fail(self, message: str) -> bytes:
        return self._begin() + sse_event(
            "error", {"type": "error", "error": {"type": "api_error", "message": message}}
        )

    # -- events ----------------------------------------------------------------------------

    @staticmethod
    def _event(kind: str, data: dict[str, Any]) -> bytes:
        return sse_event(kind, {"type": kind, **data})

    def _begin(self) -> bytes:
        if self._begun:
            return b""
        self._begun = True
        start = self._event("message_start", {"message": self._translation.envelope([])})
        return start + self._event("ping", {})

    def _start(self, block: dict[str, Any]) -> tuple[int, bytes]:
        out = self._stop()
        index = self._open = self._blocks
        self._blocks += 1
        return index, out + self._event(
            "content_block_start", {"index": index, "content_block": block}
        )

    def _stop(self) -> bytes:
        if self._open is None:
            return b""
        index, self._open = self._open, None
        self._text_open = False
        return self._event("content_block_stop", {"index": index})

    def _text(self, text: str) -> bytes:
        out = b""
        if not self._text_open or self._open is None:
            _, out = self._start({"type": "text", "text": ""})
            self._text_open = True
        delta = {"type": "text_delta", "text": text}
        return out + self._event("content_block_delta", {"index": self._open, "delta": delta})

    def _call(self, call: dict[str, Any]) -> bytes:
        out = b""
        position = call.get("index", 0)
        function = call.get("function") if isinstance(call.get("function"), dict) else {}
        assert isinstance(function, dict)
        index = self._calls.get(position)
        if index is None:
            block: dict[str, Any] = {
                "type": "tool_use",
                "id": call.get("id") or new_id("toolu_"),
                "name": function.get("name") or "",
                "input": {},
            }
            index, out = self._start(block)
            self._calls[position] = index
        arguments = function.get("arguments")
        if not isinstance(arguments, str) or not arguments:
            return out
        # Engines send one call's fragments before the next call's; should one come late,
        # it still goes to its own block (clients accumulate deltas by index).
        delta = {"type": "input_json_delta", "partial_json": arguments}
        return out + self._event("content_block_delta", {"index": index, "delta": delta})
