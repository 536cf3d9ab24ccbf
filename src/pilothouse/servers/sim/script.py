"""Scripted replies: the simulator answers from a YAML script, for agent tests and demos.

A script lists replies tried in order; the first whose ``when`` conditions all hold answers
a chat completion with its ``content``, its ``tool_calls`` or both. When none matches, the
simulator generates its usual filler text. Matching is pure: it looks at the conversation
(roles and text of the messages, the tools offered), never at time or randomness, so an
agent run against a script is reproducible::

    replies:
      - when: {last_role: user, contains: "weather"}
        tool_calls: [{name: get_weather, arguments: {city: Paris}}]
      - when: {last_role: tool}
        content: "It is sunny in Paris."
      - content: "I cannot help with that."

Conditions: ``last_role`` (the role of the last message), ``contains`` (a Python regular
expression searched in the last message's text), ``turn`` (how many assistant messages the
conversation already has) and ``tool`` (a function name among the request's ``tools``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from pilothouse.config.loader import read_yaml, validate_model
from pilothouse.engines.tokenizer import ChatMessage

Role = Literal["system", "developer", "user", "assistant", "tool"]
FUNCTION_NAME = r"^[A-Za-z0-9_-]{1,64}$"  # OpenAI's rule for function names


@dataclass(frozen=True, slots=True)
class Conversation:
    """What a scripted reply is matched against: one chat completion request."""

    messages: tuple[ChatMessage, ...]
    """Role and text of each message (text parts joined; tool calls carry no text)."""
    tools: tuple[str, ...] = ()
    """Function names the request offers in ``tools``."""
    key: bytes = b""
    """Canonical bytes of the request's messages: seeds deterministic tool-call ids."""

    @property
    def last(self) -> ChatMessage | None:
        return self.messages[-1] if self.messages else None

    @property
    def turn(self) -> int:
        """Assistant messages already in the conversation."""
        return sum(1 for m in self.messages if m.role == "assistant")


class When(BaseModel):
    """Conditions of one reply; every one given must hold (none given: always)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    last_role: Role | None = None
    contains: str | None = None
    turn: int | None = Field(default=None, ge=0)
    tool: str | None = None

    @field_validator("contains")
    @classmethod
    def _regex(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"not a valid regular expression: {exc}") from exc
        return value

    def holds(self, conversation: Conversation) -> bool:
        last = conversation.last
        if self.last_role is not None and (last is None or last.role != self.last_role):
            return False
        if self.contains is not None and (
            last is None or re.search(self.contains, last.content) is None
        ):
            return False
        if self.turn is not None and conversation.turn != self.turn:
            return False
        return self.tool is None or self.tool in conversation.tools


class ScriptedCall(BaseModel):
    """One tool call of a reply; ``arguments`` is sent as JSON text."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=FUNCTION_NAME)
    arguments: dict[str, Any] = Field(default_factory=dict)

    @field_validator("arguments")
    @classmethod
    def _json(cls, value: dict[str, Any]) -> dict[str, Any]:
        try:
            orjson.dumps(value)
        except orjson.JSONEncodeError as exc:
            raise ValueError(f"cannot be written as JSON: {exc}") from exc
        return value


class Reply(BaseModel):
    """One scripted answer: ``content``, ``tool_calls`` or both."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    when: When = Field(default_factory=When)
    content: str | None = None
    tool_calls: tuple[ScriptedCall, ...] = ()

    @model_validator(mode="after")
    def _says_something(self) -> Reply:
        if self.content is None and not self.tool_calls:
            raise ValueError("a reply needs 'content', 'tool_calls' or both")
        return self


class Script(BaseModel):
    """A whole script file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    replies: tuple[Reply, ...] = Field(min_length=1)

    def reply_for(self, conversation: Conversation) -> Reply | None:
        """The first reply whose conditions hold, else ``None`` (generate as usual)."""
        return next((r for r in self.replies if r.when.holds(conversation)), None)


def load_script(path: str | Path) -> Script:
    """Read and check a script file; a bad one is a :class:`ConfigError` naming the field
    (``replies[1].when.contains: not a valid regular expression: ...``)."""
    return validate_model(Script, read_yaml(path), source=str(path))
