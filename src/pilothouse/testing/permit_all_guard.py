"""A :class:`~pilothouse.toolgateway.guard.ToolGuard` that allows everything.

For tests of the tool gateway's plumbing (and of your own MCP servers behind it) without
policy, pinning, taint, approvals or budgets: every tool is visible, every call is
allowed, results pass unchanged. It records what it saw, so a test can assert on it.
Never use it in front of real agents.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from pilothouse.governance.governor import Identity
from pilothouse.toolgateway.guard import ToolCall, ToolDefinition, ToolResult, ToolSession, Verdict


@dataclass(slots=True)
class PermitAllGuard:
    """Allows every call; keeps the listings and calls it was shown."""

    listings: dict[str, list[ToolDefinition]] = field(default_factory=dict)
    """Server → its latest listing (``tools_changed``)."""
    calls: list[ToolCall] = field(default_factory=list)
    changes: int = 0
    """How many times ``tools_changed`` was called."""
    refusals: list[tuple[str, str, str]] = field(default_factory=list)
    """(session id, subject, rule) of each request the HTTP front refused."""

    async def tools_changed(self, server: str, tools: Sequence[ToolDefinition]) -> None:
        self.listings[server] = list(tools)
        self.changes += 1

    async def visible(
        self, session: ToolSession, tools: Sequence[ToolDefinition]
    ) -> list[ToolDefinition]:
        return list(tools)

    async def before_call(self, call: ToolCall) -> Verdict:
        self.calls.append(call)
        return Verdict("allow", "permitted by PermitAllGuard", "permit-all")

    async def after_call(
        self, call: ToolCall, verdict: Verdict, result: ToolResult, elapsed_s: float
    ) -> ToolResult:
        return result

    def refused(self, session_id: str, identity: Identity, rule: str, reason: str) -> None:
        self.refusals.append((session_id, identity.subject, rule))
