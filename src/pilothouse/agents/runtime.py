"""The agent runtime: :class:`AgentRuntime`, the :class:`~pilothouse.agents.ports.AgentRunner`
every way of serving an agent drives (``pilothouse agent run``, ``/v1/responses``, A2A).

It owns what outlives one run: the agent's spec and its fleet's other agents (its
sub-agents), how to connect to the gateway and the tool gateway with an agent's identity
(``connect``: the real one is :func:`pilothouse.agents.connect.connector`, tests pass fakes),
the governance store's :class:`~pilothouse.governance.agent_runs.RunBook` where runs are
written, where approvals are read, and the prices of the fleet's models. A run itself is a
:class:`~pilothouse.agents.loop.RunLoop` over a journal and a budget.

``run(task, run_id=ID)`` with an ``ID`` the store knows resumes that run where it stopped
(with its own task: ``task`` is not used then); a finished run just yields its final step.
A run is driven under its lease (:mod:`.lease`): one another process drives is refused with
:class:`~pilothouse.errors.RunInProgress`, nothing done.
:func:`build_runner` is the factory ``pilothouse agent serve`` uses.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING

from pilothouse.agents.budget import RESOURCES, Limits, RunBudget
from pilothouse.agents.clients import AgentClients, Approvals
from pilothouse.agents.journal import Journal, check_run_id
from pilothouse.agents.lease import RunLease, process_owner
from pilothouse.agents.loop import RunLoop
from pilothouse.agents.ports import RunResult, Step
from pilothouse.agents.serving.settings import RunnerSettings
from pilothouse.agents.tracing import end_run_span, start_run_span, traced_clients
from pilothouse.config.agents import AgentSpec
from pilothouse.config.fleet import FleetSpec
from pilothouse.config.governance import GovernanceSpec, PriceSpec
from pilothouse.errors import AgentError, ConfigError
from pilothouse.governance.agent_runs import RunBook, RunRecord, spent_by_subject

if TYPE_CHECKING:
    from pilothouse.telemetry.provider import Tracing

DEFAULT_TOOLS_URL = "http://127.0.0.1:8100/mcp"
Connect = Callable[[AgentSpec], AbstractAsyncContextManager[AgentClients]]
"""Open an agent's connections (model and tools) with that agent's own identity."""


class AgentRuntime:
    """Runs one agent (see the module docstring)."""

    def __init__(
        self,
        agent: AgentSpec,
        *,
        connect: Connect,
        book: RunBook,
        approvals: Approvals,
        agents: Mapping[str, AgentSpec] | None = None,
        prices: Mapping[str, PriceSpec] | None = None,
        wait_for_approval: bool = True,
        poll_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        tracing: Tracing | None = None,
    ) -> None:
        self.agent = agent
        self.connect = connect
        self.book = book
        self.approvals = approvals
        self.agents: Mapping[str, AgentSpec] = {agent.name: agent, **(agents or {})}
        self.prices: Mapping[str, PriceSpec] = prices or {}
        self.wait_for_approval = wait_for_approval
        """Wait in process for a person's decision (else the run stops ``waiting_approval``
        and a later ``run(run_id=…)`` goes on)."""
        self.poll_s = poll_s
        self.clock = clock
        self.wall = wall
        self.tracing = tracing
        """``tracing:`` of the fleet: one ``invoke_agent`` span per run (:mod:`.tracing`)."""
        self.owner = process_owner()
        """Whose lease a run driven here holds (:mod:`.lease`)."""
        _check_prices(self.agents, self.prices)

    @property
    def name(self) -> str:
        return self.agent.name

    async def run(self, task: str, *, run_id: str | None = None) -> AsyncIterator[Step]:
        """Yield each step as it is persisted; the last is a ``final`` step, unless the run
        stopped to wait for a person (an ``approval`` step; see ``wait_for_approval``)."""
        run_id = check_run_id(run_id) if run_id is not None else f"run_{secrets.token_hex(8)}"
        now = self.wall()
        fresh = RunRecord(
            run_id,
            self.agent.name,
            task,
            "running",
            now,
            now,
            limits=Limits.of(self.agent.budgets).as_dict(),
        )
        known = await asyncio.to_thread(self.book.run, run_id)
        resumed = known is not None
        if known is not None:  # a resumed run keeps its task: text given now is not a new task
            _check_resume(known, self.agent.name)
        elif not task.strip():
            raise AgentError("a new run needs a task")
        else:  # recorded first: a lease is taken on a run the store knows
            journal, _ = await Journal.open(self.book, fresh, self.wall)
        async with RunLease(self.book, run_id, self.owner, self.wall):
            if resumed:  # its steps as they are under the lease (another process went on?)
                journal, _ = await Journal.open(self.book, fresh, self.wall)
            budget = RunBudget(run_id, Limits.from_dict(journal.run.limits), journal.record)
            if resumed:
                budget.seed(await journal.spent())
            async for step in self._drive(self.agent, journal, budget, None):
                yield step

    async def _drive(
        self, agent: AgentSpec, journal: Journal, budget: RunBudget, parent: RunLoop | None
    ) -> AsyncIterator[Step]:
        """Run the loop of ``agent`` with its own connections, in its span when tracing."""
        span = None
        if self.tracing is not None:
            parent_span = parent.span if parent is not None else None
            span = start_run_span(self.tracing, agent, journal.run.id, parent_span)
        try:
            async with self.connect(agent) as clients:
                if span is not None:
                    clients = traced_clients(clients, span)
                loop = RunLoop(self, agent, journal, budget, clients)
                loop.span = span
                async for step in loop.steps():
                    yield step
        finally:
            if span is not None:
                end_run_span(span, journal.run.status)

    async def delegate(
        self, parent: RunLoop, agent: AgentSpec, share: float, run_id: str, task: str
    ) -> AsyncIterator[Step]:
        """Run (or resume) the sub-agent ``agent`` as run ``run_id`` under ``parent``: its
        limits are ``share`` of what the parent has left (wall time included), and all it
        spends is charged to the parent too."""
        wall = parent.budget.limits.wall_time_s
        wall_left = None if wall is None else max(0.0, wall - parent.active_s())
        limits = parent.budget.slice(run_id, Limits.of(agent.budgets), share, wall_left)
        now = self.wall()
        fresh = RunRecord(
            run_id,
            agent.name,
            task,
            "running",
            now,
            now,
            parent_id=parent.run_id,
            limits=limits.as_dict(),
        )
        journal, _ = await Journal.open(self.book, fresh, self.wall)
        journal.share_ledger(parent.journal)
        budget = parent.budget.child(run_id, Limits.from_dict(journal.run.limits))
        async with RunLease(self.book, run_id, self.owner, self.wall):
            async for step in self._drive(agent, journal, budget, parent):
                yield step

    async def result(self, run_id: str) -> RunResult:
        """Where a run stands, from the store."""
        return await run_result(self.book, run_id)


async def run_result(book: RunBook, run_id: str) -> RunResult:
    """A run's :class:`RunResult` from the store (in a worker thread)."""
    return await asyncio.to_thread(summarize, book, run_id)


def summarize(book: RunBook, run_id: str) -> RunResult:
    """A run's :class:`RunResult` from the store: what it and its sub-agents spent."""
    run = book.get_run(run_id)
    steps = book.steps(run_id)
    spent = spent_by_subject(book.budget_events(run_id))
    usage: dict[str, float] = {
        r: sum((per.get(r, 0.0) for per in spent.values()), 0.0) for r in RESOURCES
    }
    return RunResult(
        run_id=run.id,
        status=run.status,  # type: ignore[arg-type]
        output=run.output,
        steps=sum(1 for s in steps if s.kind == "model"),
        tokens=int(usage["tokens"]),
        tool_calls=int(usage["tool_calls"]),
        pending_approval=run.pending_approval,
        usage={**usage, "active_s": run.active_s},
    )


def _check_prices(agents: Mapping[str, AgentSpec], prices: Mapping[str, PriceSpec]) -> None:
    """A money budget is only kept when every model its run (or a sub-agent's) may call has
    a price; refuse to start rather than let calls go uncounted."""
    if not any(a.budgets.money_usd is not None for a in agents.values()):
        return
    unpriced = sorted({a.model for a in agents.values() if a.model not in prices})
    if unpriced:
        raise ConfigError(
            f"budgets.money_usd needs a price for every agent's model: add {unpriced} to "
            "gateway.governance.prices",
            "agents",
        )


def _check_resume(run: RunRecord, agent: str) -> None:
    if run.agent != agent:
        raise AgentError(f"run {run.id} is a run of agent '{run.agent}', not '{agent}'")


def build_runner(spec: AgentSpec, fleet: FleetSpec, settings: RunnerSettings) -> AgentRuntime:
    """The runner of one agent of ``fleet`` for a service (``pilothouse agent serve``): its
    runs in the fleet's governance store, its model and tool calls with ``settings.api_key``
    (else each agent's own key, made on first start), approvals not waited for in process
    (the run stops ``waiting_approval``; calling ``run`` again with its id goes on)."""
    from pilothouse.agents.setup import AgentTarget, agent_keys, build_runtime, open_book

    agents = {a.name: a for a in fleet.agents}
    governance = fleet.gateway.governance or GovernanceSpec()
    target = AgentTarget(
        spec,
        {**agents, spec.name: spec},
        settings.gateway_url,
        settings.toolgateway_url or DEFAULT_TOOLS_URL,
        governance,
        dict(governance.prices),
        fleet.tracing,
    )
    store, book, state_dir = open_book(governance)
    if settings.api_key is None and fleet.gateway.governance is None:
        keys = dict.fromkeys(target.agents, "none")  # a gateway that checks no key
    else:
        keys, _ = agent_keys(target, store, state_dir, settings.api_key, "pilothouse")
    return build_runtime(target, book, keys, wait_for_approval=False)
