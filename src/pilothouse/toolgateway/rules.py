"""The rules every tool listing and call passes: :class:`Rules`, the :class:`ToolGuard`.

For a listing, each tool is shown only when it is not quarantined (:mod:`.pinning`) and the
Cedar policy permits ``list`` (:mod:`.policy`); what was hidden, and why, is audited in one
event. A call passes, in order:

1. **pinning**: the tool's current definition is the one approved (rules ``pinning``,
   ``shadowing``, ``invisible-unicode``); and, for an agent's key, the tool is on the
   agent's allow-list (rule ``agent-allow-list``, :mod:`.agent_rules`);
2. **policy**: Cedar permits ``call`` (the rule is the deciding policy's id), and so does
   the agent's own ``policy`` for an agent's key;
3. **approvals**: the tool is listed in ``tools.approvals`` or, for an agent's key, in the
   agent's ``approvals`` (rule ``approval``), or it is an
   ``egress`` tool and the session is tainted (rule ``taint``: it received output of an
   ``untrusted_output`` tool, or ``sensitive`` data — the rule of two). An approval is bound
   to the session, the principal, the tool and the hash of the exact arguments, and used
   once: the agent's identical call after a person approved it goes ahead; a call with other
   arguments asks anew (a replayed approval is refused, and audited);
4. **budgets**: calls and tool seconds per session, calls per minute per identity, reserved
   before the call and settled after it (rule ``budget``).

After a call, the session's taint grows by the tool's labels and every secret value in the
result is redacted (:mod:`.redact`). Every decision goes to the audit log.

The store of pins and approvals and the audit log are synchronous (a database behind
them): pins are cached by :class:`~.pin_state.PinState` and re-read when the store's
version moves (checked at most every ``pin_refresh_s``); approvals are asked for, awaited
and used through :class:`~.approvals.Approvals`; the store is only called from a worker
thread. The :class:`ToolStore` and :class:`AuditLog` protocols (:mod:`.ports`, re-exported
here) name exactly what the rules use.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Literal

from pilothouse.clock import Clock
from pilothouse.config.agents import AgentSpec
from pilothouse.config.tools import SEPARATOR, ToolsSpec
from pilothouse.errors import BudgetExceeded, RateLimited
from pilothouse.governance.governor import Identity
from pilothouse.governance.ports import LimitBackend
from pilothouse.governance.service import Governance
from pilothouse.toolgateway.agent_rules import ALLOW_LIST_RULE, AgentRules
from pilothouse.toolgateway.approvals import TAINTING, Approvals, Need
from pilothouse.toolgateway.guard import ToolCall, ToolDefinition, ToolResult, ToolSession, Verdict
from pilothouse.toolgateway.pin_state import Digest, PinState
from pilothouse.toolgateway.pinning import Quarantine
from pilothouse.toolgateway.policy import PolicyRequest, ToolPolicy
from pilothouse.toolgateway.ports import (
    Approval,
    AuditEvent,
    AuditLog,
    Pin,
    SecretValues,
    ToolStore,
)
from pilothouse.toolgateway.redact import Redactor
from pilothouse.toolgateway.session_state import Hold, SessionState, SessionTable, ToolBudgets

__all__ = [
    "Approval",
    "AuditEvent",
    "AuditLog",
    "Pin",
    "Rules",
    "SecretValues",
    "ToolStore",
    "build_rules",
]

log = logging.getLogger("pilothouse.toolgateway")

_DETAIL_MAX = 2000


class Rules:
    """See the module docstring."""

    def __init__(
        self,
        spec: ToolsSpec,
        store: ToolStore,
        audit: AuditLog,
        *,
        policy: ToolPolicy,
        digest: Digest,
        args_hash: Digest,
        secrets: SecretValues,
        limits: LimitBackend,
        clock: Clock,
        pin_refresh_s: float = 1.0,
        poll_s: float = 0.25,
        sessions: SessionTable | None = None,
        agents: AgentRules | None = None,
    ) -> None:
        self.spec = spec
        self.store = store
        self.audit = audit
        self.policy = policy
        self.clock = clock
        self._args_hash = args_hash
        self._secrets = secrets
        self.sessions = sessions or SessionTable()
        self.agents = agents or AgentRules(())
        """The fleet's agents: their allow-lists and approvals (:mod:`.agent_rules`)."""
        self.budgets = ToolBudgets(spec.budgets, limits)
        self._redactor = Redactor()
        self._labels = {
            f"{s.name}{SEPARATOR}{tool}": frozenset(labels)
            for s in spec.servers
            for tool, labels in s.labels.items()
        }
        self._timeouts = {s.name: s.timeout_s for s in spec.servers}
        self.approvals = Approvals(spec.approvals, store, clock, self._record, poll_s)
        """When a call needs a person's approval; the session's approvals (:mod:`.approvals`)."""
        self.pins = PinState(store, clock, digest, self._audit_quarantine, pin_refresh_s)
        """The upstream tools against their approved pins (:mod:`.pin_state`)."""

    # -- pinning --------------------------------------------------------------------------

    async def tools_changed(self, server: str, tools: Sequence[ToolDefinition]) -> None:
        await self.pins.tools_changed(server, tools)

    def _audit_quarantine(self, tool: str, found: Quarantine | None) -> None:
        if found is None:
            self._record("quarantine", "", "", tool, "released", "pinning", "approved")
        else:
            self._record("quarantine", "", "", tool, "quarantined", found.rule, found.reason)

    # -- listing --------------------------------------------------------------------------

    async def visible(
        self, session: ToolSession, tools: Sequence[ToolDefinition]
    ) -> list[ToolDefinition]:
        await self.pins.refresh()
        now = self.clock.now()
        state = self.sessions.get(session.id, session.identity.subject, now)
        shown: list[ToolDefinition] = []
        hidden: list[str] = []
        for tool in tools:
            found = self.pins.quarantine(tool)
            if found is not None:
                hidden.append(f"{tool.federated} ({found.rule}: {found.reason})")
                continue
            if self.agents.refusal(session.identity, tool.federated) is not None:
                hidden.append(f"{tool.federated} ({ALLOW_LIST_RULE})")
                continue
            request = self._request("list", session, tool, state, now)
            decision = self.agents.decide(self.policy.decide(request), request)
            if decision.allowed:
                shown.append(tool)
            else:
                hidden.append(f"{tool.federated} (policy {decision.policy})")
        detail = f"shown {len(shown)} of {len(tools)}"
        if hidden:
            detail += "; hidden: " + ", ".join(hidden)
        self._record("list", session.id, session.identity.subject, "", "allow", "list", detail)
        return shown

    # -- calls ----------------------------------------------------------------------------

    async def before_call(self, call: ToolCall) -> Verdict:
        await self.pins.refresh()
        now = self.clock.now()
        tool, session = call.tool, call.session
        principal = session.identity.subject
        found = self.pins.quarantine(tool)
        if found is not None:
            return self._deny(call, found.rule, f"{tool.federated} is quarantined: {found.reason}")
        refusal = self.agents.refusal(session.identity, tool.federated)
        if refusal is not None:
            return self._deny(call, ALLOW_LIST_RULE, refusal)
        state = self.sessions.get(session.id, principal, now)
        args_hash = self._args_hash(call.arguments)
        approval = await self.approvals.live(state, call, args_hash)
        approved = approval is not None and approval.status == "approved"
        request = self._request("call", session, tool, state, now, call, approved)
        decision = self.agents.decide(self.policy.decide(request), request)
        if decision.errors:
            log.warning("policy errors for %s: %s", tool.federated, "; ".join(decision.errors))
        if not decision.allowed:
            return self._deny(call, decision.policy, f"policy {decision.policy} forbids this call")
        need = self.approvals.need(tool, request.labels, state, session.identity, self.agents)
        if need is not None and not approved:
            return await self._ask(call, state, args_hash, need, approval)
        try:
            hold = await self.budgets.reserve(
                session.id, principal, self._timeouts.get(tool.server, 30.0), now
            )
        except (BudgetExceeded, RateLimited) as exc:
            return self._deny(call, "budget", str(exc))
        rule = decision.policy
        if need is not None and approval is not None:
            if not await self.approvals.consume(call, state, args_hash, approval, need):
                await self.budgets.release(hold, now)
                return self._deny(call, need.rule, "the approval is no longer valid: call again")
            rule = need.rule
        state.called(tool.federated, now)
        self._record_call(call, "allow", rule, f"policy {decision.policy}")
        return Verdict("allow", "allowed", rule, hold=hold)

    def _request(
        self,
        action: Literal["list", "call"],
        session: ToolSession,
        tool: ToolDefinition,
        state: SessionState,
        now: float,
        call: ToolCall | None = None,
        approved: bool = False,
    ) -> PolicyRequest:
        labels = self._labels.get(tool.federated, frozenset())
        if call is not None:
            labels |= call.labels
        return PolicyRequest(
            action,
            session.identity,
            tool,
            labels,
            session.acting_for,
            call.arguments if call is not None else None,
            frozenset(state.taint),
            state.history(tool.federated, now),
            approved,
            state.approvals_used,
        )

    async def _ask(
        self,
        call: ToolCall,
        state: SessionState,
        args_hash: str,
        need: Need,
        approval: Approval | None,
    ) -> Verdict:
        tool = call.tool.federated
        if approval is not None and approval.status == "denied":
            state.pending.pop((tool, args_hash), None)
            return self._deny(call, need.rule, "a person denied this call")
        if approval is None:
            approval = await self.approvals.request(call, state, args_hash, need)
        if need.spec.wait_s > 0:
            decided = await self.approvals.wait(approval.id, need.spec.wait_s)
            if decided is not None and decided.status == "approved":
                return await self.before_call(call)
            if decided is not None and decided.status == "denied":
                state.pending.pop((tool, args_hash), None)
                return self._deny(call, need.rule, "a person denied this call")
        self._record_call(call, "pending", need.rule, f"{need.reason} (approval {approval.id})")
        return Verdict("pending", need.reason, need.rule, approval_id=approval.id)

    async def after_call(
        self, call: ToolCall, verdict: Verdict, result: ToolResult, elapsed_s: float
    ) -> ToolResult:
        now = self.clock.now()
        session, tool = call.session, call.tool.federated
        principal = session.identity.subject
        if verdict.outcome == "allow":
            if isinstance(verdict.hold, Hold):
                await self.budgets.settle(verdict.hold, elapsed_s, now)
            state = self.sessions.get(session.id, principal, now)
            labels = (self._labels.get(tool, frozenset()) | call.labels) & TAINTING
            new = labels - state.taint
            if new:
                state.taint |= new
                taint = ", ".join(sorted(new))
                self._record("taint", session.id, principal, tool, "tainted", "taint", taint)
        self._redactor.update(self._secrets.values())
        result, redacted = self._redactor.result(result)
        if redacted:
            detail = f"{redacted} secret value(s) redacted"
            self._record("redaction", session.id, principal, tool, "redacted", "secrets", detail)
        outcome = "error" if result.is_error else "ok"
        self._record(
            "result", session.id, principal, tool, outcome, verdict.rule, f"{elapsed_s:.3f} s"
        )
        return result

    # -- audit ----------------------------------------------------------------------------

    def refused(self, session_id: str, identity: Identity, rule: str, reason: str) -> None:
        self._record("request", session_id, identity.subject, "", "deny", rule, reason)

    def _deny(self, call: ToolCall, rule: str, reason: str) -> Verdict:
        self._record_call(call, "deny", rule, reason)
        return Verdict("deny", reason, rule)

    def _record_call(self, call: ToolCall, decision: str, rule: str, detail: str) -> None:
        session = call.session
        if session.acting_for is not None:
            detail = f"{detail}; acting for {session.acting_for}"
        self._record(
            "call",
            session.id,
            session.identity.subject,
            call.tool.federated,
            decision,
            rule,
            detail,
        )

    def _record(
        self,
        kind: str,
        session: str,
        principal: str,
        tool: str,
        decision: str,
        rule: str,
        detail: str,
    ) -> None:
        self.audit.record(
            AuditEvent(
                kind, session, principal, tool, decision, rule, {"message": detail[:_DETAIL_MAX]}
            )
        )


class _Wall:
    def __init__(self, wall: Callable[[], float]) -> None:
        self._wall = wall

    def now(self) -> float:
        return self._wall()


def build_rules(
    spec: ToolsSpec,
    governance: Governance,
    secrets: SecretValues,
    *,
    store: ToolStore,
    audit: AuditLog,
    digest: Digest,
    args_hash: Digest,
    clock: Clock | None = None,
    agents: Sequence[AgentSpec] = (),
) -> Rules:
    """The rules of ``spec``: its Cedar policy parsed once (:class:`ConfigError` when it
    does not parse), calls per minute counted in governance's limit backend (shared when
    that is Redis), wall time from governance unless ``clock`` is given.

    ``store``, ``audit``, ``digest`` and ``args_hash`` are ``governance.tool_store``'s
    ``ToolStore``, ``AuditLog``, ``definition_digest`` and ``args_hash``; ``agents`` are
    the fleet's agents, whose allow-lists and approvals apply to their keys' calls.
    """
    governor = governance.governor
    return Rules(
        spec,
        store,
        audit,
        policy=ToolPolicy.load(spec.policy),
        digest=digest,
        args_hash=args_hash,
        secrets=secrets,
        limits=governor.limits,
        clock=clock or _Wall(governor.wall),
        agents=AgentRules(agents),
    )
