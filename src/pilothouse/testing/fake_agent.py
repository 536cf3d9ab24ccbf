"""Fakes of what the agent runtime talks to: a scripted model, tools, approvals.

Test an agent's loop without a gateway or a tool gateway::

    model = FakeModel([tool_reply("files__read", {"path": "a"}), text_reply("done")])
    tools = FakeTools({"files__read": lambda args: "contents"})
    runtime = AgentRuntime(spec, connect=fake_connect(model, tools), book=..., approvals=...)

:class:`FakeModel` answers from its script in order (each entry a :class:`ModelReply` or a
function of the messages it was sent), and reports as usage the prompt's UTF-8 bytes / 4
and the reply's; :class:`FakeTools` runs Python functions and logs every call it *ran*
(with its call id); a tool listed in ``held`` answers "pending approval" until
:class:`FakeApprovals` says the approval was approved, then runs once — as the tool
gateway does.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pilothouse.agents.clients import (
    AgentClients,
    ModelReply,
    ToolCallRequest,
    ToolOutcome,
    ToolSpec,
)
from pilothouse.config.agents import AgentSpec

Script = ModelReply | Callable[[Sequence[Mapping[str, Any]]], ModelReply]


def text_reply(text: str, completion_tokens: int = 5) -> ModelReply:
    return ModelReply(content=text, completion_tokens=completion_tokens)


def tool_reply(name: str, arguments: Mapping[str, Any], completion_tokens: int = 10) -> ModelReply:
    call = ToolCallRequest(f"call_{name}", name, json.dumps(dict(arguments)))
    return ModelReply(tool_calls=(call,), completion_tokens=completion_tokens)


class FakeModel:
    """A model answering from a script (see the module docstring)."""

    def __init__(self, script: Sequence[Script], *, repeat_last: bool = False) -> None:
        self.script = list(script)
        self.repeat_last = repeat_last
        self.calls: list[list[Mapping[str, Any]]] = []
        self.max_tokens: list[int] = []

    async def complete(
        self,
        messages: Sequence[Mapping[str, Any]],
        tools: Sequence[ToolSpec],
        *,
        max_tokens: int,
        temperature: float,
    ) -> ModelReply:
        turn = len(self.calls)
        self.calls.append(list(messages))
        self.max_tokens.append(max_tokens)
        if turn >= len(self.script) and not (self.repeat_last and self.script):
            raise AssertionError(f"the fake model has no reply for turn {turn}")
        entry = self.script[min(turn, len(self.script) - 1)]
        reply = entry(messages) if callable(entry) else entry
        prompt = len(json.dumps(list(messages)).encode()) // 4
        completion = min(reply.completion_tokens, max_tokens)
        return ModelReply(reply.content, reply.tool_calls, prompt, completion, reply.finish_reason)


@dataclass
class FakeApprovals:
    """Approval statuses, as a person sets them (``decide``)."""

    statuses: dict[str, str] = field(default_factory=dict)

    def decide(self, approval_id: str, approve: bool = True) -> None:
        self.statuses[approval_id] = "approved" if approve else "denied"

    async def status(self, approval_id: str) -> str | None:
        return self.statuses.get(approval_id)


@dataclass(frozen=True, slots=True)
class RanCall:
    name: str
    arguments: Mapping[str, Any]
    call_id: str


class FakeTools:
    """Tools as Python functions of their arguments (see the module docstring)."""

    def __init__(
        self,
        functions: Mapping[str, Callable[[Mapping[str, Any]], str]],
        *,
        held: Sequence[str] = (),
        approvals: FakeApprovals | None = None,
        idempotent: Sequence[str] = (),
    ) -> None:
        self.functions = dict(functions)
        self.held = set(held)
        self.approvals = approvals or FakeApprovals()
        self.idempotent = set(idempotent)
        self.ran: list[RanCall] = []
        self.sent: list[RanCall] = []
        self._asked: dict[tuple[str, str], str] = {}

    async def list_tools(self) -> list[ToolSpec]:
        return [ToolSpec(name, idempotent=name in self.idempotent) for name in self.functions]

    async def call(self, name: str, arguments: Mapping[str, Any], call_id: str) -> ToolOutcome:
        self.sent.append(RanCall(name, dict(arguments), call_id))
        if name not in self.functions:
            return ToolOutcome(f"unknown tool '{name}'", is_error=True)
        if name in self.held:
            key = (name, json.dumps(dict(arguments), sort_keys=True))
            approval = self._asked.get(key)
            status = self.approvals.statuses.get(approval) if approval else None
            if approval is None or status in (None, "pending", "used"):
                if approval is None or status == "used":
                    approval = f"apr_{len(self._asked) + 1}"
                    self._asked[key] = approval
                    self.approvals.statuses[approval] = "pending"
                return ToolOutcome(f"pending approval {approval}", True, approval)
            self.approvals.statuses[approval] = "used"
            if status == "denied":
                return ToolOutcome("refused by approval: a person denied this call", True)
        self.ran.append(RanCall(name, dict(arguments), call_id))
        return ToolOutcome(self.functions[name](arguments))


def fake_connect(
    models: Mapping[str, FakeModel] | FakeModel, tools: Mapping[str, FakeTools] | FakeTools
) -> Callable[[AgentSpec], contextlib.AbstractAsyncContextManager[AgentClients]]:
    """``connect`` for :class:`~pilothouse.agents.runtime.AgentRuntime`: one fake model
    and tools for every agent, or one per agent name."""

    @contextlib.asynccontextmanager
    async def connect(agent: AgentSpec) -> AsyncIterator[AgentClients]:
        model = models if isinstance(models, FakeModel) else models[agent.name]
        tool = tools if isinstance(tools, FakeTools) else tools[agent.name]
        yield AgentClients(model, tool)

    return connect
