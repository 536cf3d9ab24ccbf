"""The Agent spec: an agentic loop run as a governed service (docs/agents.md).

An ``agents:`` section of a Fleet, or a file of its own with ``kind: Agent``::

    agents:
      - name: triage
        model: chat                          # a model or traffic split of this fleet
        instructions: |
          You triage support tickets. Look the customer up, then file an issue.
        team: support                        # the agent's key belongs to this team
        tools: [crm__lookup, github__*]      # allow-list of federated tool names
        sub_agents:
          - {name: summariser, budget_share: 0.25}
        approvals: [github__create_issue]    # every call waits for a person
        policy: policies/triage.cedar        # Cedar, applied by the tool gateway
        budgets: {tokens: 200000, money_usd: 0.5, tool_calls: 40, steps: 20,
                  wall_time_s: 600}

Every model call goes to the pilothouse gateway and every tool call to the tool gateway,
each with the agent's own identity, so identity, policy, budgets and audit apply to both;
the runtime reserves the run's budget before each call as well.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from pilothouse.config.loader import SpecProblems, read_yaml, validate_model

AGENT_NAME = re.compile(r"^[a-z]([a-z0-9-]{0,61}[a-z0-9])?$")
"""An agent name is a DNS label: it names its key, its Kubernetes objects and its A2A card."""

AGENT_KEY_PREFIX = "agent-"
"""An agent's governance key is named ``agent-<name>`` in its team (kind ``agent``): that is
how the tool gateway knows a caller is that agent and applies its allow-list and approvals."""


def agent_key_name(agent: str) -> str:
    return f"{AGENT_KEY_PREFIX}{agent}"


TOOL_PATTERN = re.compile(r"^[a-z][a-z0-9-]{0,31}__([A-Za-z0-9_.-]+|\*)$")
"""``<server>__<tool>`` or ``<server>__*`` (every tool of one server)."""


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AgentBudgetSpec(_Spec):
    """What one run may spend; ``None``: no limit of that kind. Each is reserved before the
    call that would spend it, and a sub-agent's budget is carved out of its parent's."""

    tokens: int | None = Field(default=None, gt=0)
    """Model tokens (prompt + completion) over the whole run."""
    money_usd: float | None = Field(default=None, gt=0)
    """Money over the whole run, priced with ``gateway.governance.prices``."""
    tool_calls: int | None = Field(default=None, gt=0)
    """Tool calls over the whole run."""
    steps: int = Field(default=20, gt=0)
    """Model turns (each model call is one step)."""
    wall_time_s: float = Field(default=600.0, gt=0)
    """Longest a run may take, time spent waiting for an approval excluded."""


class SubAgentSpec(_Spec):
    """Another agent of the same fleet this one may delegate to (as a tool it can call)."""

    name: str
    """The sub-agent's name; it appears to the parent as the tool ``agent__<name>``."""
    budget_share: float = Field(default=0.5, gt=0, le=1)
    """Fraction of the parent's *remaining* budget a delegation may take; the sub-agent can
    never spend more than the parent has left, whatever its own budgets say."""


class AgentSpec(_Spec):
    """One agent (docs/agents.md)."""

    api_version: Literal["pilothouse.dev/v1alpha1"] = Field(
        default="pilothouse.dev/v1alpha1", alias="apiVersion"
    )
    kind: Literal["Agent"] = "Agent"
    name: str
    """A DNS label, unique in the fleet."""
    description: str = ""
    """What the agent does, shown on its A2A Agent Card and in ``/v1/models``."""
    model: str
    """The model (or traffic split) it calls through the gateway."""
    instructions: str = ""
    """The system prompt of every run."""
    team: str = "default"
    """The governance team its identity belongs to (budgets and limits of that team apply)."""
    tools: list[str] = Field(default_factory=list)
    """Allow-list of federated tool names (``server__tool`` or ``server__*``); the tool
    gateway's policy still applies on top."""
    sub_agents: list[SubAgentSpec] = Field(default_factory=list)
    approvals: list[str] = Field(default_factory=list)
    """Tools (same patterns as ``tools``) whose every call by this agent waits for a person."""
    policy: Path | None = None
    """A Cedar policy file the tool gateway applies to this agent's calls."""
    budgets: AgentBudgetSpec = Field(default_factory=AgentBudgetSpec)
    temperature: float = Field(default=0.0, ge=0, le=2)
    max_output_tokens: int = Field(default=1024, gt=0)
    """``max_tokens`` of each model call (reserved against the budget before the call)."""
    replicas: int = Field(default=1, ge=1)
    """Instances of the agent service (``pilothouse up`` runs one; Kubernetes runs these)."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not AGENT_NAME.match(value):
            raise ValueError("a DNS label: lowercase letters, digits and '-', at most 63")
        return value

    @model_validator(mode="after")
    def _patterns(self) -> AgentSpec:
        problems = SpecProblems()
        for field in ("tools", "approvals"):
            for i, pattern in enumerate(getattr(self, field)):
                if not TOOL_PATTERN.match(pattern):
                    problems.add(
                        (field, i), f"'{pattern}' is not server__tool or server__* (see docs)"
                    )
        names = [s.name for s in self.sub_agents]
        if len(set(names)) != len(names):
            problems.add(("sub_agents",), "each sub-agent is named once")
        if self.name in names:
            problems.add(("sub_agents",), "an agent cannot delegate to itself")
        problems.raise_if_any()
        return self

    def allows(self, tool: str) -> bool:
        """Whether ``tool`` (a federated name) is on this agent's allow-list."""
        return any(_matches(pattern, tool) for pattern in self.tools)

    def needs_approval(self, tool: str) -> bool:
        return any(_matches(pattern, tool) for pattern in self.approvals)


def _matches(pattern: str, tool: str) -> bool:
    if pattern.endswith("__*"):
        return tool.startswith(pattern[:-1])
    return pattern == tool


def check_agents(
    agents: list[AgentSpec], served: set[str], servers: set[str] | None
) -> SpecProblems:
    """Cross-checks of a fleet's agents: models served, tool servers declared, sub-agents
    known and free of cycles. ``servers`` is ``None`` when the fleet has no tool gateway."""
    problems = SpecProblems()
    by_name = {a.name: a for a in agents}
    if len(by_name) != len(agents):
        problems.add(("agents",), "agent names must be unique")
    for i, agent in enumerate(agents):
        if agent.model not in served:
            problems.add(("agents", i, "model"), f"no model or traffic split named '{agent.model}'")
        if (agent.tools or agent.approvals) and servers is None:
            problems.add(("agents", i, "tools"), "tools need a tools: section in the fleet")
        for field in ("tools", "approvals"):
            for j, pattern in enumerate(getattr(agent, field)):
                server = pattern.split("__", 1)[0]
                if servers is not None and server not in servers:
                    problems.add(("agents", i, field, j), f"no tool server named '{server}'")
        for j, sub in enumerate(agent.sub_agents):
            if sub.name not in by_name:
                problems.add(("agents", i, "sub_agents", j, "name"), f"no agent named '{sub.name}'")
        if _in_cycle(agent.name, by_name):
            problems.add(("agents", i, "sub_agents"), "delegation must not loop back")
    return problems


def _in_cycle(start: str, by_name: dict[str, AgentSpec]) -> bool:
    seen: set[str] = set()
    stack = [s.name for s in by_name[start].sub_agents] if start in by_name else []
    while stack:
        name = stack.pop()
        if name == start:
            return True
        if name in seen or name not in by_name:
            continue
        seen.add(name)
        stack.extend(s.name for s in by_name[name].sub_agents)
    return False


def load_agent(path: str | Path) -> AgentSpec:
    """An agent from a file of its own (``kind: Agent``)."""
    return validate_model(AgentSpec, read_yaml(path), source=str(path))
