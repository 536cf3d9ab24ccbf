"""A scripted reply as the engine produces it: one piece per output token.

The reply's tokens are counted with the simulator's dummy tokenizer, content first, then
each tool call as its name followed by its arguments' JSON text, so the engine model spends
one decode step per token exactly as for generated text, and ``usage.completion_tokens`` is
that count. When the engine stops early (``max_tokens``), the answer is what its tokens
covered so far, streamed or not: a cut tool call keeps the arguments written so far and the
finish reason says ``length``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from itertools import groupby
from typing import Any

import orjson

from pilothouse.engines.tokenizer import DummyTokenizer
from pilothouse.openai.tool_calls import ToolCall, arguments_delta, opening_delta, tool_call_id
from pilothouse.servers.sim.script import Conversation, Reply


@dataclass(frozen=True, slots=True)
class Piece:
    """One output token: text added to the content (``call`` is ``None``) or to the
    arguments of tool call ``call``; ``opens`` marks a call's first token."""

    call: int | None
    text: str
    opens: bool = False


@dataclass(frozen=True, slots=True)
class ScriptedOutput:
    """The tokens of one scripted reply and the answer they spell."""

    content: str | None
    calls: tuple[ToolCall, ...]
    pieces: tuple[Piece, ...]

    @classmethod
    def build(
        cls, reply: Reply, conversation: Conversation, tokenizer: DummyTokenizer
    ) -> ScriptedOutput:
        pieces: list[Piece] = []
        if reply.content is not None:
            texts = tokenizer.pieces(reply.content) or [reply.content]  # at least one token
            pieces += [Piece(None, text) for text in texts]
        calls = []
        for index, scripted in enumerate(reply.tool_calls):
            call = ToolCall(
                id=tool_call_id(conversation.key, index),
                name=scripted.name,
                arguments=orjson.dumps(scripted.arguments).decode(),
            )
            calls.append(call)
            pieces.append(Piece(index, "", opens=True))
            pieces += [Piece(index, "") for _ in tokenizer.pieces(call.name)[1:]]
            pieces += [Piece(index, text) for text in tokenizer.pieces(call.arguments)]
        return cls(reply.content, tuple(calls), tuple(pieces))

    @property
    def tokens(self) -> int:
        return len(self.pieces)

    def finish_reason(self, engine_reason: str) -> str:
        """``tool_calls`` when the engine finished the reply and it calls tools."""
        return "tool_calls" if engine_reason == "stop" and self.calls else engine_reason

    def message(self, tokens: int) -> dict[str, Any]:
        """The ``message`` of a non-streamed answer after ``tokens`` output tokens."""
        shown = self.pieces[:tokens]
        content = "".join(p.text for p in shown if p.call is None)
        message: dict[str, Any] = {
            "role": "assistant",
            "content": content if content or self.content is not None else None,
        }
        opened = [p.call for p in shown if p.opens and p.call is not None]
        if opened:
            message["tool_calls"] = [
                replace(
                    self.calls[index],
                    arguments="".join(p.text for p in shown if p.call == index),
                ).entry()
                for index in opened
            ]
        return message

    def deltas(self, offset: int, count: int) -> Iterator[dict[str, Any]]:
        """Chat ``delta`` objects for output tokens ``offset .. offset + count``: one per run
        of tokens with the same target (content, or one tool call), skipping silent runs."""
        for call, group in groupby(self.pieces[offset : offset + count], key=lambda p: p.call):
            run = list(group)
            text = "".join(p.text for p in run)
            if call is None:
                yield {"content": text}
            elif run[0].opens:
                yield {"tool_calls": [opening_delta(call, self.calls[call], text)]}
            elif text:
                yield {"tool_calls": [arguments_delta(call, text)]}

    def step(
        self, offset: int, count: int, engine_reason: str | None
    ) -> list[tuple[dict[str, Any], str | None]]:
        """The stream chunks of one engine step, as ``(delta, finish_reason)``: one per
        delta, the last carrying the reason once the engine finished (alone, in an empty
        delta, when the step's tokens add nothing visible)."""
        deltas = list(self.deltas(offset, count))
        if engine_reason is None:
            return [(delta, None) for delta in deltas]
        if not deltas:
            deltas.append({})
        reason = self.finish_reason(engine_reason)
        return [(delta, reason if i == len(deltas) - 1 else None) for i, delta in enumerate(deltas)]
