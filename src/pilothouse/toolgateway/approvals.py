"""Approvals of tool calls: when a call needs one, and the store's approvals of a session.

A call needs an approval when its tool is listed in ``tools.approvals``, when the agent's
own ``approvals`` name it (for an agent's key), or when it is an ``egress`` tool and the
session is tainted (it received ``untrusted_output`` or ``sensitive`` data: the rule of two).
An approval is bound to the session, the principal, the tool and the hash of the exact
arguments, and used once (:meth:`Approvals.consume`): a replayed approval is refused, and
a call with other arguments asks anew.

The store is synchronous (a database behind it) and only called from a worker thread.
Every request for, and use of, an approval is audited through ``record``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from pilothouse.clock import Clock
from pilothouse.config.tools import ApprovalRule, Label
from pilothouse.governance.governor import Identity
from pilothouse.toolgateway.agent_rules import AgentRules
from pilothouse.toolgateway.guard import ToolCall, ToolDefinition
from pilothouse.toolgateway.ports import Approval, ToolStore
from pilothouse.toolgateway.session_state import SessionState

TAINTING: frozenset[Label] = frozenset({"untrusted_output", "sensitive"})
"""Labels whose output taints a session."""
Record = Callable[[str, str, str, str, str, str, str], None]
"""An audit event: kind, session, principal, tool, decision, rule, detail."""


@dataclass(frozen=True, slots=True)
class Need:
    """Why a call needs an approval, and the rule that asks for it."""

    rule: Literal["approval", "taint"]
    reason: str
    spec: ApprovalRule


class Approvals:
    """See the module docstring."""

    def __init__(
        self,
        rules: Sequence[ApprovalRule],
        store: ToolStore,
        clock: Clock,
        record: Record,
        poll_s: float,
    ) -> None:
        self._rules = {tool: rule for rule in rules for tool in rule.tools}
        self._store = store
        self._clock = clock
        self._record = record
        self._poll_s = poll_s

    def need(
        self,
        tool: ToolDefinition,
        labels: frozenset[Label],
        state: SessionState,
        identity: Identity,
        agents: AgentRules,
    ) -> Need | None:
        """Why a call of ``tool`` in this session needs an approval; None when it does not.
        ``agents``: the fleet's agents (an agent's key follows its agent's approvals)."""
        rule = self._rules.get(tool.federated)
        if rule is not None:
            return Need("approval", f"every call of {tool.federated} needs an approval", rule)
        by_agent = agents.approval(identity, tool.federated)
        if by_agent is not None:
            return Need("approval", *by_agent)
        if "egress" in labels and state.taint & TAINTING:
            because = " and ".join(sorted(state.taint & TAINTING))
            return Need(
                "taint",
                f"egress after {because} output in this session needs an approval",
                ApprovalRule(),
            )
        return None

    async def live(self, state: SessionState, call: ToolCall, args_hash: str) -> Approval | None:
        """The live approval asked for this exact call in this session, if any."""
        key = (call.tool.federated, args_hash)
        approval_id = state.pending.get(key)
        if approval_id is None:
            return None
        approval = await asyncio.to_thread(self._store.approval, approval_id)
        now = self._clock.now()
        if (
            approval is None
            or approval.principal != call.session.identity.subject
            or approval.session != call.session.id
            or approval.status in ("used", "expired")
            or approval.expires_at <= now
        ):
            state.pending.pop(key, None)
            return None
        return approval

    async def request(
        self, call: ToolCall, state: SessionState, args_hash: str, need: Need
    ) -> Approval:
        """Ask a person to approve this exact call (audited)."""
        tool = call.tool.federated
        replay = any(t == tool for t, _ in state.pending)
        session, principal = call.session.id, call.session.identity.subject
        approval = await asyncio.to_thread(
            self._store.request_approval,
            session,
            principal,
            tool,
            args_hash,
            need.reason,
            need.spec.ttl_s,
            self._clock.now(),
        )
        state.pending[(tool, args_hash)] = approval.id
        detail = need.reason
        if replay:
            detail += "; an approval for other arguments of this tool is not reused"
        self._record("approval", session, principal, tool, "requested", need.rule, detail)
        return approval

    async def wait(self, approval_id: str, wait_s: float) -> Approval | None:
        """The approval once a person decided it, or None after ``wait_s``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_s
        while loop.time() < deadline:
            await asyncio.sleep(min(self._poll_s, max(0.0, deadline - loop.time())))
            approval = await asyncio.to_thread(self._store.approval, approval_id)
            if approval is None or approval.status != "pending":
                return approval
        return None

    async def consume(
        self, call: ToolCall, state: SessionState, args_hash: str, approval: Approval, need: Need
    ) -> bool:
        """Use ``approval`` for this call, once; False when it was used or is no longer valid."""
        tool, session = call.tool.federated, call.session
        state.pending.pop((tool, args_hash), None)
        used = await asyncio.to_thread(
            self._store.consume, approval.id, session.id, tool, args_hash, self._clock.now()
        )
        if used:
            state.approvals_used += 1
        self._record(
            "approval",
            session.id,
            session.identity.subject,
            tool,
            "consumed" if used else "refused",
            need.rule,
            f"approval {approval.id}",
        )
        return bool(used)
