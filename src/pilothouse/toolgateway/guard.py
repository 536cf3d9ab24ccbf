"""The seam between the federating MCP endpoint and the rules every tool call passes.

The endpoint (:mod:`pilothouse.toolgateway.server`) speaks MCP to agents and to upstream
servers; it knows nothing of policy. For each session it asks a :class:`ToolGuard`:

- which of the upstream tools this session may see (``visible``): quarantined tools
  (changed since approval, new, or shadowing another server's tool) and tools policy does
  not permit are left out;
- whether a call may go ahead (``before_call``): a :class:`Verdict` that allows it (with the
  budget it holds), denies it (naming the rule that did), or leaves it pending a person's
  approval;
- what the agent gets back (``after_call``): the result with secrets redacted, and the
  session's taint updated from the tool's labels;
- when upstream tools changed (``tools_changed``: a new listing, or
  ``notifications/tools/list_changed``);
- what the HTTP front refused before MCP saw it (``refused``: an identity presenting
  another identity's session id), so that attempt is audited too.

Every decision is audited by the guard. Data crossing the seam is frozen dataclasses.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from pilothouse.config.tools import Label
from pilothouse.governance.governor import Identity


@dataclass(frozen=True, slots=True)
class ToolDefinition:
    """One upstream tool as its server describes it (what is pinned)."""

    server: str
    name: str
    """As the server names it; agents see ``<server>__<name>``."""
    description: str | None
    input_schema: Mapping[str, Any]
    output_schema: Mapping[str, Any] | None = None
    title: str | None = None
    annotations: Mapping[str, Any] | None = None

    @property
    def federated(self) -> str:
        return f"{self.server}__{self.name}"


@dataclass(frozen=True, slots=True)
class ToolSession:
    """One agent's MCP session with the gateway."""

    id: str
    """The gateway's ``Mcp-Session-Id`` (random; never an upstream's)."""
    identity: Identity
    acting_for: str | None = None
    """The user an agent acts for, when its credentials say (a JWT's ``act``/``sub``)."""


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A ``tools/call`` as the guard sees it."""

    session: ToolSession
    tool: ToolDefinition
    arguments: Mapping[str, Any]
    labels: frozenset[Label] = frozenset()
    request_id: str = ""


@dataclass(frozen=True, slots=True)
class Verdict:
    """What happens to a call."""

    outcome: Literal["allow", "deny", "pending"]
    reason: str
    """Human-readable; for a denial, what the agent is told (never a secret)."""
    rule: str
    """The policy or rule that decided (a Cedar policy id, ``pinning``, ``taint``,
    ``approval``, ``budget``): audited with the decision."""
    approval_id: str | None = None
    """For ``pending``: the approval to wait for (the agent calls again to poll)."""
    hold: object | None = field(default=None, compare=False)
    """What the guard reserved for an allowed call (budgets); given back in after_call."""


@dataclass(frozen=True, slots=True)
class ToolResult:
    """A tool's answer as MCP carries it (``content`` blocks, ``structuredContent``)."""

    content: Sequence[Mapping[str, Any]]
    structured: Mapping[str, Any] | None = None
    is_error: bool = False


class ToolGuard(Protocol):
    """The rules (see the module docstring); implemented by
    :class:`pilothouse.toolgateway.rules.Rules`."""

    async def tools_changed(self, server: str, tools: Sequence[ToolDefinition]) -> None:
        """An upstream server's current listing (at connect, and after list_changed)."""

    async def visible(
        self, session: ToolSession, tools: Sequence[ToolDefinition]
    ) -> list[ToolDefinition]:
        """The tools this session may see (``tools/list``), in order."""

    async def before_call(self, call: ToolCall) -> Verdict: ...

    async def after_call(
        self, call: ToolCall, verdict: Verdict, result: ToolResult, elapsed_s: float
    ) -> ToolResult:
        """The result the agent gets (secrets redacted), after taint and budgets were
        updated and the call audited."""

    def refused(self, session_id: str, identity: Identity, rule: str, reason: str) -> None:
        """The front refused ``identity``'s request on ``session_id`` (rule
        ``session-owner``: the session belongs to another identity); audit it. Synchronous
        and cheap: it runs on the request path of a refusal."""
