"""From a spec file to a runtime: which agent, where its gateways are, its store, its keys.

``pilothouse agent run`` (and whatever serves agents) goes through :func:`load_target`
(a Fleet with ``agents:`` or a ``kind: Agent`` file), :func:`open_book` (the governance
store, migrated) and :func:`build_runtime`, which gives every agent of the target its own
key (:mod:`.identity`) unless one key was given for all, and connects each agent to the
gateway and the tool gateway with its key (:mod:`.remote`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from pilothouse.agents.clients import AgentClients, ToolClient
from pilothouse.agents.identity import ensure_agent_key
from pilothouse.agents.remote import NoTools, model_gateway, tool_gateway
from pilothouse.agents.runtime import DEFAULT_TOOLS_URL, AgentRuntime, Connect
from pilothouse.config.agents import AgentSpec, load_agent
from pilothouse.config.fleet import load_fleet
from pilothouse.config.governance import GovernanceSpec, PriceSpec
from pilothouse.config.loader import read_yaml
from pilothouse.config.tracing import TracingSpec
from pilothouse.errors import ConfigError
from pilothouse.governance.agent_runs import RunBook
from pilothouse.governance.store import SqlStore, default_state_dir, open_store

if TYPE_CHECKING:
    from pilothouse.telemetry.provider import Tracing


@dataclass(frozen=True, slots=True)
class AgentTarget:
    """One agent to run, with the fleet around it."""

    agent: AgentSpec
    agents: Mapping[str, AgentSpec]
    """Every agent it may delegate to (the fleet's agents)."""
    gateway_url: str
    tools_url: str
    governance: GovernanceSpec = field(default_factory=GovernanceSpec)
    prices: Mapping[str, PriceSpec] = field(default_factory=dict)
    tracing: TracingSpec | None = None
    """``tracing:`` of the fleet: one ``invoke_agent`` span per run."""


def load_target(
    path: Path, agent: str | None, gateway: str | None = None, tools: str | None = None
) -> AgentTarget:
    """The agent ``agent`` of ``path`` (a Fleet, or a ``kind: Agent`` file); the URLs
    default to the fleet's gateway address and the tool gateway's default port."""
    data = read_yaml(path)
    if isinstance(data, dict) and data.get("kind") == "Agent":
        spec = load_agent(path)
        if agent is not None and agent != spec.name:
            raise ConfigError(f"{path} defines agent '{spec.name}', not '{agent}'")
        missing = [s.name for s in spec.sub_agents]
        if missing:
            raise ConfigError(
                f"sub-agents {missing} are defined in a fleet: run the agent from its fleet",
                "sub_agents",
            )
        return AgentTarget(
            spec, {spec.name: spec}, gateway or "http://127.0.0.1:8000", tools or DEFAULT_TOOLS_URL
        )
    fleet = load_fleet(path)
    by_name = {a.name: a for a in fleet.agents}
    if not by_name:
        raise ConfigError(f"{path} has no agents: section", "agents")
    if agent is None:
        if len(by_name) > 1:
            raise ConfigError(
                f"{path} has several agents: choose one with --agent {sorted(by_name)}"
            )
        agent = next(iter(by_name))
    if agent not in by_name:
        raise ConfigError(f"{path} has no agent named '{agent}' (it has {sorted(by_name)})")
    host = fleet.gateway.host if fleet.gateway.host not in ("0.0.0.0", "::") else "127.0.0.1"
    governance = fleet.gateway.governance or GovernanceSpec()
    return AgentTarget(
        by_name[agent],
        by_name,
        gateway or f"http://{host}:{fleet.gateway.port}",
        tools or DEFAULT_TOOLS_URL,
        governance,
        dict(governance.prices),
        fleet.tracing,
    )


def open_book(
    governance: GovernanceSpec, store_url: str | None = None, state_dir: Path | None = None
) -> tuple[SqlStore, RunBook, Path]:
    """The governance store (migrated), its runs, and the state directory (for key files)."""
    updates: dict[str, object] = {}
    if store_url:
        updates["store"] = store_url
    if state_dir is not None:
        updates["state_dir"] = state_dir
    spec = governance.model_copy(update=updates)
    default = default_state_dir(os.environ)
    store = open_store(spec, default)
    store.migrate()
    return store, RunBook(store), (spec.state_dir or default).expanduser()


class StoreApprovals:
    """Approvals read from the governance store (where the tool gateway writes them)."""

    def __init__(self, book: RunBook) -> None:
        self.book = book

    async def status(self, approval_id: str) -> str | None:
        return await asyncio.to_thread(self.book.approval_status, approval_id)


def agent_keys(
    target: AgentTarget, store: SqlStore, state_dir: Path, key: str | None, owner: str
) -> tuple[dict[str, str], bool]:
    """A key per agent of the target: ``key`` for all when given, else each its own; and
    whether a key was made just now (wait ``governance.sync_interval_s`` before using it:
    gateways learn of new keys that often)."""
    names = _reachable(target.agent, target.agents)
    if key:
        return dict.fromkeys(names, key), False
    keys: dict[str, str] = {}
    made = False
    for name in names:
        spec = target.agents[name]
        keys[name], new = ensure_agent_key(store, spec, state_dir, owner, frozenset({spec.model}))
        made = made or new
    return keys, made


def _reachable(agent: AgentSpec, agents: Mapping[str, AgentSpec]) -> list[str]:
    found: list[str] = []
    stack = [agent.name]
    while stack:
        name = stack.pop()
        if name in found or name not in agents:
            continue
        found.append(name)
        stack.extend(s.name for s in agents[name].sub_agents)
    return found


def connector(gateway_url: str, tools_url: str, keys: Mapping[str, str]) -> Connect:
    """Connect each agent with its own key (see :mod:`.remote`)."""

    @contextlib.asynccontextmanager
    async def connect(agent: AgentSpec) -> AsyncIterator[AgentClients]:
        key = keys[agent.name]
        async with contextlib.AsyncExitStack() as stack:
            model = await stack.enter_async_context(model_gateway(gateway_url, key, agent.model))
            tools: ToolClient = NoTools()
            if agent.tools:
                tools = await stack.enter_async_context(tool_gateway(tools_url, key))
            yield AgentClients(model, tools)

    return connect


def build_runtime(
    target: AgentTarget,
    book: RunBook,
    keys: Mapping[str, str],
    *,
    wait_for_approval: bool = True,
    poll_s: float = 1.0,
) -> AgentRuntime:
    return AgentRuntime(
        target.agent,
        tracing=process_tracing(target.tracing),
        connect=connector(target.gateway_url, target.tools_url, keys),
        book=book,
        approvals=StoreApprovals(book),
        agents=target.agents,
        prices=target.prices,
        wait_for_approval=wait_for_approval,
        poll_s=poll_s,
    )


_TRACING: dict[str, Tracing] = {}


def process_tracing(spec: TracingSpec | None) -> Tracing | None:
    """This process's tracer for ``spec`` (one per process: it is also OpenTelemetry's global
    provider, so the MCP client injects the run's context into its tool calls); exported on
    :meth:`~pilothouse.telemetry.provider.Tracing.shutdown` or at exit."""
    if spec is None:
        return None
    if "agents" not in _TRACING:
        from pilothouse.telemetry.provider import start_tracing

        _TRACING["agents"] = start_tracing(spec, "agents", install_global=True)
    return _TRACING["agents"]
