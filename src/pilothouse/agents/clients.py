"""What the runtime loop needs from the outside world: a model, tools, approvals.

The loop (:mod:`pilothouse.agents.runtime`) speaks to three small protocols, so it is
unit-tested with the fakes in :mod:`pilothouse.testing.fake_agent` and served, for real,
by :mod:`.openai_model` (chat completions through the pilothouse gateway) and
:mod:`.mcp_tools` (MCP through the tool gateway), each with the agent's own key.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class ToolCallRequest:
    """A tool call the model asked for (OpenAI ``tool_calls[]``)."""

    id: str
    name: str
    arguments: str
    """JSON text, as the model wrote it."""


@dataclass(frozen=True, slots=True)
class ModelReply:
    """One chat completion: text, tool calls, and the usage the gateway reported."""

    content: str = ""
    tool_calls: tuple[ToolCallRequest, ...] = ()
    prompt_tokens: int = 0
    completion_tokens: int = 0
    finish_reason: str = "stop"


@dataclass(frozen=True, slots=True)
class ToolSpec:
    """A tool offered to the model (from the tool gateway's ``tools/list``)."""

    name: str
    description: str = ""
    input_schema: Mapping[str, Any] = field(default_factory=lambda: {"type": "object"})
    read_only: bool = False
    """MCP ``annotations.readOnlyHint``."""
    idempotent: bool = False
    """MCP ``annotations.idempotentHint``: calling it twice does no more than once."""

    def as_openai(self) -> dict[str, Any]:
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description,
                "parameters": dict(self.input_schema),
            },
        }


@dataclass(frozen=True, slots=True)
class ToolOutcome:
    """What a tool call came back with. ``approval_id`` set: the tool gateway holds the
    call for a person (it did not run); call again with the same arguments once decided."""

    text: str
    is_error: bool = False
    approval_id: str | None = None


class ModelClient(Protocol):
    """Chat completions (the pilothouse gateway's ``/v1/chat/completions``)."""

    async def complete(
        self,
        messages: Sequence[Mapping[str, Any]],
        tools: Sequence[ToolSpec],
        *,
        max_tokens: int,
        temperature: float,
    ) -> ModelReply: ...


class ToolClient(Protocol):
    """The tool gateway's ``/mcp``: list the tools, call one."""

    async def list_tools(self) -> list[ToolSpec]: ...

    async def call(self, name: str, arguments: Mapping[str, Any], call_id: str) -> ToolOutcome:
        """Call ``name``; ``call_id`` is the run's deterministic id of this call (sent in
        the request's ``_meta`` for servers that deduplicate by it)."""
        ...


class Approvals(Protocol):
    """Where a person's decision on a held call is read (the governance store)."""

    async def status(self, approval_id: str) -> str | None:
        """``pending``, ``approved``, ``denied``, ``used``, ``expired``; None: unknown."""
        ...


@dataclass(frozen=True, slots=True)
class AgentClients:
    """The connections of one agent, with its own identity."""

    model: ModelClient
    tools: ToolClient
