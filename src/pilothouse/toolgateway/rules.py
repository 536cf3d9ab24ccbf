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
them): pins are cached here and re-read when the store's version moves (checked at most
every ``pin_refresh_s``), and the store is only called from a worker thread. The
:class:`ToolStore` and :class:`AuditLog` protocols (:mod:`.ports`, re-exported here) name
exactly what the rules use.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pilothouse.clock import Clock
from pilothouse.config.agents import AgentSpec
from pilothouse.config.tools import SEPARATOR, ApprovalRule, Label, ToolsSpec
from pilothouse.errors import BudgetExceeded, RateLimited
from pilothouse.governance.governor import Identity
from pilothouse.governance.ports import LimitBackend
from pilothouse.governance.service import Governance
from pilothouse.toolgateway.agent_rules import ALLOW_LIST_RULE, AgentRules
from pilothouse.toolgateway.guard import ToolCall, ToolDefinition, ToolResult, ToolSession, Verdict
from pilothouse.toolgateway.pinning import (
    Observed,
    PinIndex,
    Quarantine,
    always_quarantined,
    definition_of,
    observe,
    same_name_elsewhere,
)
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

Digest = Callable[[Mapping[str, Any]], str]
_TAINTING: frozenset[Label] = frozenset({"untrusted_output", "sensitive"})
_DETAIL_MAX = 2000


@dataclass(frozen=True, slots=True)
class _Need:
    rule: Literal["approval", "taint"]
    reason: str
    spec: ApprovalRule


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
        self._digest = digest
        self._args_hash = args_hash
        self._secrets = secrets
        self._pin_refresh_s = pin_refresh_s
        self._poll_s = poll_s
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
        self._approval_rules = {tool: rule for rule in spec.approvals for tool in rule.tools}
        self._observed: dict[tuple[str, str], Observed] = {}
        self._listed: dict[str, set[str]] = {}
        self._gone: set[tuple[str, str]] = set()
        self._readded: dict[tuple[str, str], float] = {}
        self._pins: Mapping[tuple[str, str], Pin] = {}
        self._index = PinIndex.of(())
        self._pin_version: int | None = None
        self._pins_checked = float("-inf")
        self._assessed: dict[tuple[str, str], Quarantine | None] = {}
        self._audited: dict[tuple[str, str], tuple[str, str] | None] = {}

    # -- pinning --------------------------------------------------------------------------

    async def tools_changed(self, server: str, tools: Sequence[ToolDefinition]) -> None:
        now = self.clock.now()
        seen = [observe(tool, self._digest(definition_of(tool))) for tool in tools]
        names = {s.tool.name for s in seen}
        before = self._listed.get(server, set())
        for name in before - names:
            self._gone.add((server, name))
            self._observed.pop((server, name), None)
        for name in names & {n for s, n in self._gone if s == server}:
            self._gone.discard((server, name))
            self._readded[(server, name)] = now
        self._listed[server] = names
        for s in seen:
            self._observed[(server, s.tool.name)] = s
            self._assessed.pop((server, s.tool.name), None)
        await asyncio.to_thread(self.store.observe, server, [dict(s.definition) for s in seen])
        await self._refresh_pins(force=True)
        self._audit_quarantines()

    async def _refresh_pins(self, force: bool = False) -> None:
        now = self.clock.now()
        if not force and now - self._pins_checked < self._pin_refresh_s:
            return
        self._pins_checked = now
        version = await asyncio.to_thread(self.store.version)
        if version == self._pin_version:
            return
        pins = await asyncio.to_thread(self.store.pins)
        self._pins, self._pin_version = pins, version
        self._index = PinIndex.of(pins.keys())
        self._assessed.clear()
        self._audit_quarantines()

    def quarantine(self, tool: ToolDefinition) -> Quarantine | None:
        """Why ``tool`` is held back, or None when it may be used (module docstring of
        :mod:`.pinning`)."""
        key = (tool.server, tool.name)
        seen = self._observed.get(key)
        if seen is None or seen.tool != tool:
            return Quarantine("pinning", "not in its server's current listing")
        if key not in self._assessed:
            self._assessed[key] = self._assess(seen)
        return self._assessed[key]

    def _assess(self, seen: Observed) -> Quarantine | None:
        found = always_quarantined(seen, self._index)
        if found is not None:
            return found
        key = (seen.tool.server, seen.tool.name)
        pin = self._pins.get(key)
        if pin is None:
            other = same_name_elsewhere(seen, self._index)
            if other is not None:
                return Quarantine("shadowing", f"new, with the name of {other}: not approved")
            return Quarantine("pinning", "new: not approved")
        if pin.digest != seen.digest:
            return Quarantine("pinning", f"changed since {pin.approved_by} approved it")
        readded = self._readded.get(key)
        if readded is not None and pin.approved_at < readded:
            return Quarantine("pinning", "removed and listed again since it was approved")
        return None

    def _audit_quarantines(self) -> None:
        """One ``quarantine`` event per change of a tool's state (held back or released)."""
        for key, seen in self._observed.items():
            found = self.quarantine(seen.tool)
            state = (seen.digest, found.rule) if found is not None else None
            if self._audited.get(key) == state or (state is None and key not in self._audited):
                continue
            self._audited[key] = state
            tool = seen.tool.federated
            if found is None:
                self._record("quarantine", "", "", tool, "released", "pinning", "approved")
            else:
                self._record("quarantine", "", "", tool, "quarantined", found.rule, found.reason)

    # -- listing --------------------------------------------------------------------------

    async def visible(
        self, session: ToolSession, tools: Sequence[ToolDefinition]
    ) -> list[ToolDefinition]:
        await self._refresh_pins()
        now = self.clock.now()
        state = self.sessions.get(session.id, session.identity.subject, now)
        shown: list[ToolDefinition] = []
        hidden: list[str] = []
        for tool in tools:
            found = self.quarantine(tool)
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
        await self._refresh_pins()
        now = self.clock.now()
        tool, session = call.tool, call.session
        principal = session.identity.subject
        found = self.quarantine(tool)
        if found is not None:
            return self._deny(call, found.rule, f"{tool.federated} is quarantined: {found.reason}")
        refusal = self.agents.refusal(session.identity, tool.federated)
        if refusal is not None:
            return self._deny(call, ALLOW_LIST_RULE, refusal)
        state = self.sessions.get(session.id, principal, now)
        args_hash = self._args_hash(call.arguments)
        approval = await self._approval(state, call, args_hash)
        approved = approval is not None and approval.status == "approved"
        request = self._request("call", session, tool, state, now, call, approved)
        decision = self.agents.decide(self.policy.decide(request), request)
        if decision.errors:
            log.warning("policy errors for %s: %s", tool.federated, "; ".join(decision.errors))
        if not decision.allowed:
            return self._deny(call, decision.policy, f"policy {decision.policy} forbids this call")
        need = self._needs_approval(tool, request.labels, state, session.identity)
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
            if not await self._consume(call, state, args_hash, approval, need):
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

    def _needs_approval(
        self,
        tool: ToolDefinition,
        labels: frozenset[Label],
        state: SessionState,
        identity: Identity,
    ) -> _Need | None:
        rule = self._approval_rules.get(tool.federated)
        if rule is not None:
            return _Need("approval", f"every call of {tool.federated} needs an approval", rule)
        by_agent = self.agents.approval(identity, tool.federated)
        if by_agent is not None:
            return _Need("approval", *by_agent)
        if "egress" in labels and state.taint & _TAINTING:
            because = " and ".join(sorted(state.taint & _TAINTING))
            return _Need(
                "taint",
                f"egress after {because} output in this session needs an approval",
                ApprovalRule(),
            )
        return None

    async def _approval(
        self, state: SessionState, call: ToolCall, args_hash: str
    ) -> Approval | None:
        """The live approval asked for this exact call in this session, if any."""
        key = (call.tool.federated, args_hash)
        approval_id = state.pending.get(key)
        if approval_id is None:
            return None
        approval = await asyncio.to_thread(self.store.approval, approval_id)
        now = self.clock.now()
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

    async def _ask(
        self,
        call: ToolCall,
        state: SessionState,
        args_hash: str,
        need: _Need,
        approval: Approval | None,
    ) -> Verdict:
        tool = call.tool.federated
        if approval is not None and approval.status == "denied":
            state.pending.pop((tool, args_hash), None)
            return self._deny(call, need.rule, "a person denied this call")
        if approval is None:
            replay = any(t == tool for t, _ in state.pending)
            session, principal = call.session.id, call.session.identity.subject
            approval = await asyncio.to_thread(
                self.store.request_approval,
                session,
                principal,
                tool,
                args_hash,
                need.reason,
                need.spec.ttl_s,
                self.clock.now(),
            )
            state.pending[(tool, args_hash)] = approval.id
            detail = need.reason
            if replay:
                detail += "; an approval for other arguments of this tool is not reused"
            self._record("approval", session, principal, tool, "requested", need.rule, detail)
        if need.spec.wait_s > 0:
            decided = await self._wait(approval.id, need.spec.wait_s)
            if decided is not None and decided.status == "approved":
                return await self.before_call(call)
            if decided is not None and decided.status == "denied":
                state.pending.pop((tool, args_hash), None)
                return self._deny(call, need.rule, "a person denied this call")
        self._record_call(call, "pending", need.rule, f"{need.reason} (approval {approval.id})")
        return Verdict("pending", need.reason, need.rule, approval_id=approval.id)

    async def _wait(self, approval_id: str, wait_s: float) -> Approval | None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_s
        while loop.time() < deadline:
            await asyncio.sleep(min(self._poll_s, max(0.0, deadline - loop.time())))
            approval = await asyncio.to_thread(self.store.approval, approval_id)
            if approval is None or approval.status != "pending":
                return approval
        return None

    async def _consume(
        self, call: ToolCall, state: SessionState, args_hash: str, approval: Approval, need: _Need
    ) -> bool:
        tool, session = call.tool.federated, call.session
        state.pending.pop((tool, args_hash), None)
        used = await asyncio.to_thread(
            self.store.consume, approval.id, session.id, tool, args_hash, self.clock.now()
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
            labels = (self._labels.get(tool, frozenset()) | call.labels) & _TAINTING
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
