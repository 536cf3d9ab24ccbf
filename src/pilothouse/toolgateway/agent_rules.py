"""The fleet's agents, enforced at the tool gateway: an agent cannot bypass its runtime.

When the fleet declares ``agents:``, a caller whose identity is an agent's key (kind
``agent``, named ``agent-<name>`` in the agent's team: how ``pilothouse agent`` makes them)
is held to that agent's spec here too, whatever client it uses:

- it sees, and may call, only the tools its ``tools`` allow-list admits (rule
  ``agent-allow-list``: hidden from ``tools/list``, a call is refused);
- every call of a tool matching its ``approvals`` waits for a person, exactly as the tool
  gateway's own ``approvals`` (rule ``approval``; the approval is bound to the session, the
  identity, the tool and the arguments hash, and used once);
- its ``policy`` (a Cedar file, same vocabulary as ``tools.policy``) must permit the listing
  and the call too: both policies are asked, and the first that forbids decides.

Any other identity (a person's key, a JWT) is not an agent: these rules leave it alone, and
the gateway's own rules apply to everyone.
"""

from __future__ import annotations

from collections.abc import Sequence

from pilothouse.config.agents import AGENT_KEY_PREFIX, AgentSpec
from pilothouse.config.tools import ApprovalRule
from pilothouse.governance.governor import Identity
from pilothouse.toolgateway.policy import PolicyDecision, PolicyRequest, ToolPolicy

ALLOW_LIST_RULE = "agent-allow-list"


class AgentRules:
    """The agents of a fleet, found by their callers' identities (module docstring)."""

    def __init__(self, agents: Sequence[AgentSpec], approval_ttl_s: float = 3600.0) -> None:
        self._agents = {a.name: a for a in agents}
        self._ttl_s = approval_ttl_s
        self._policies = {a.name: ToolPolicy.load(a.policy) for a in agents if a.policy}
        """Each agent's own Cedar policy, parsed once (ConfigError when one does not)."""

    def __bool__(self) -> bool:
        return bool(self._agents)

    def agent_of(self, identity: Identity) -> AgentSpec | None:
        """The agent ``identity`` is, when it is an agent's key in that agent's team."""
        key = identity.key
        if key is None or key.kind != "agent" or not key.name.startswith(AGENT_KEY_PREFIX):
            return None
        agent = self._agents.get(key.name.removeprefix(AGENT_KEY_PREFIX))
        if agent is None or agent.team != identity.team_name:
            return None
        return agent

    def refusal(self, identity: Identity, tool: str) -> str | None:
        """Why ``identity`` may not see or call ``tool`` (None: it may)."""
        agent = self.agent_of(identity)
        if agent is None or agent.allows(tool):
            return None
        return f"{tool} is not on the allow-list of agent '{agent.name}'"

    def approval(self, identity: Identity, tool: str) -> tuple[str, ApprovalRule] | None:
        """The reason and rule when ``identity``'s calls of ``tool`` need a person."""
        agent = self.agent_of(identity)
        if agent is None or not agent.needs_approval(tool):
            return None
        reason = f"every call of {tool} by agent '{agent.name}' needs an approval"
        return reason, ApprovalRule(tools=[tool], ttl_s=self._ttl_s)

    def decide(self, decision: PolicyDecision, request: PolicyRequest) -> PolicyDecision:
        """The gateway policy's ``decision``, unless it allowed and the caller is an agent
        whose own policy forbids (then that decision, naming the agent policy's rule)."""
        if not decision.allowed:
            return decision
        agent = self.agent_of(request.identity)
        policy = self._policies.get(agent.name) if agent is not None else None
        if policy is None:
            return decision
        own = policy.decide(request)
        return decision if own.allowed else own
