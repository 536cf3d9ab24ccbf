"""Durable agent runs in the governance store: runs, their steps, their budget ledger.

The agent runtime (:mod:`pilothouse.agents.runtime`) writes each step here *before* it
goes on, so a run interrupted anywhere (a crash, ``kill -9``, a wait for a person) resumes
from its rows: a step marked ``done`` is never done again, a tool call marked ``pending``
(the tool gateway answered "pending approval") is sent again once a person decided, and a
tool call marked ``intended`` (sent, no answer recorded) is what exactly-once cannot be
promised for (docs/agents.md). Every budget reservation and settlement of a run is a row
of ``agent_budget_events``: the run's own ledger.

Sync SQLAlchemy Core on the :class:`~pilothouse.governance.store.SqlStore`'s engine, with
its error translation (StoreUnavailable / Conflict).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from sqlalchemy import Row, insert, or_, select, update

from pilothouse.errors import Conflict, NotFound
from pilothouse.governance.tables import agent_budget_events, agent_runs, agent_steps, approvals
from pilothouse.governance.tool_records import _StoreAccess


@dataclass(frozen=True, slots=True)
class RunRecord:
    """One run of one agent (a sub-agent's run names its ``parent_id``)."""

    id: str
    agent: str
    task: str
    status: str
    created_at: float
    updated_at: float
    parent_id: str | None = None
    output: str = ""
    pending_approval: str | None = None
    limits: Mapping[str, float | None] = field(default_factory=dict)
    """The run's budgets as it started (a sub-agent's: its slice of its parent's)."""
    active_s: float = 0.0
    """Wall time spent so far, waits for a person excluded."""


@dataclass(frozen=True, slots=True)
class StepRecord:
    """One persisted step (see :class:`pilothouse.agents.ports.Step`)."""

    run_id: str
    index: int
    kind: str
    name: str
    at: float
    content: str = ""
    arguments: str = ""
    tokens: int = 0
    state: str = "done"
    """``done``; for tool calls also ``intended`` (about to be sent) and ``pending``
    (waiting for the approval ``approval_id``)."""
    call_id: str | None = None
    approval_id: str | None = None
    message: Mapping[str, Any] | None = None
    """The chat message this step adds to the conversation (assistant or tool)."""


@dataclass(frozen=True, slots=True)
class BudgetRow:
    """One reservation or settlement of a run's budget."""

    run_id: str
    hold: str
    """Shared by a reservation and its settlement."""
    action: str
    """``reserve`` or ``settle``."""
    resource: str
    """``tokens``, ``money_usd``, ``tool_calls`` or ``steps``."""
    amount: float
    ref: str
    """What it was for (``step 3 model``)."""
    at: float
    id: int | None = None


def _run(row: Row[Any]) -> RunRecord:
    return RunRecord(
        id=row.id,
        agent=row.agent,
        task=row.task,
        status=row.status,
        created_at=float(row.created_at),
        updated_at=float(row.updated_at),
        parent_id=row.parent_id,
        output=row.output,
        pending_approval=row.pending_approval,
        limits=dict(row.limits or {}),
        active_s=float(row.active_s),
    )


def _step(row: Row[Any]) -> StepRecord:
    return StepRecord(
        run_id=row.run_id,
        index=int(row.idx),
        kind=row.kind,
        name=row.name,
        at=float(row.at),
        content=row.content,
        arguments=row.arguments,
        tokens=int(row.tokens),
        state=row.state,
        call_id=row.call_id,
        approval_id=row.approval_id,
        message=dict(row.message) if row.message is not None else None,
    )


def _step_values(step: StepRecord) -> dict[str, Any]:
    values = asdict(step)
    values["idx"] = values.pop("index")
    values["message"] = dict(step.message) if step.message is not None else None
    return values


class RunBook(_StoreAccess):
    """Runs, steps and budget events (thread-safe; see the module docstring)."""

    def __repr__(self) -> str:
        return f"RunBook({self._store!r})"

    # -- runs ---------------------------------------------------------------------------------

    def create_run(self, run: RunRecord) -> RunRecord:
        """Record a new run; Conflict when its id is taken."""
        values = asdict(run)
        values["limits"] = dict(run.limits)
        with self._writing() as conn:
            if conn.execute(select(agent_runs.c.id).where(agent_runs.c.id == run.id)).first():
                raise Conflict(f"a run with id '{run.id}' exists already")
            conn.execute(insert(agent_runs).values(values))
        return run

    def run(self, run_id: str) -> RunRecord | None:
        with self._reading() as conn:
            row = conn.execute(select(agent_runs).where(agent_runs.c.id == run_id)).first()
        return _run(row) if row is not None else None

    def get_run(self, run_id: str) -> RunRecord:
        found = self.run(run_id)
        if found is None:
            raise NotFound(f"no run with id '{run_id}'")
        return found

    def list_runs(
        self, agent: str | None = None, *, limit: int = 50, children: bool = False
    ) -> list[RunRecord]:
        """The latest runs first (sub-agents' runs only with ``children``)."""
        query = select(agent_runs).order_by(agent_runs.c.created_at.desc()).limit(limit)
        if agent is not None:
            query = query.where(agent_runs.c.agent == agent)
        if not children:
            query = query.where(agent_runs.c.parent_id.is_(None))
        with self._reading() as conn:
            return [_run(row) for row in conn.execute(query)]

    def update_run(self, run_id: str, now: float, **changes: Any) -> None:
        """Change ``status``, ``output``, ``pending_approval`` or ``active_s``."""
        allowed = {"status", "output", "pending_approval", "active_s"}
        unknown = set(changes) - allowed
        if unknown:
            raise ValueError(f"not a run field one may change: {sorted(unknown)}")
        with self._writing() as conn:
            conn.execute(
                update(agent_runs)
                .where(agent_runs.c.id == run_id)
                .values(**changes, updated_at=now)
            )

    # -- the lease: which process runs a run ---------------------------------------------------

    def take_lease(
        self, run_id: str, owner: str, now: float, until: float, *, replacing: str | None = None
    ) -> tuple[str, float] | None:
        """Hold run ``run_id`` for ``owner`` until ``until`` (wall time), or renew its hold.

        Taken when nobody holds it, ``owner`` does, the holder's lease ended before ``now``,
        or the holder is ``replacing`` (a process known to be dead). ``None`` when taken;
        else who holds it and until when. :class:`NotFound` for an unknown run."""
        lease = agent_runs.c.lease_owner
        free = or_(lease.is_(None), lease == owner, agent_runs.c.lease_until < now)
        if replacing is not None:
            free = or_(free, lease == replacing)
        with self._writing() as conn:
            done = conn.execute(
                update(agent_runs)
                .where(agent_runs.c.id == run_id, free)
                .values(lease_owner=owner, lease_until=until)
            )
            if done.rowcount == 1:
                return None
            row = conn.execute(
                select(lease, agent_runs.c.lease_until).where(agent_runs.c.id == run_id)
            ).first()
        if row is None:
            raise NotFound(f"no run with id '{run_id}'")
        return str(row.lease_owner), float(row.lease_until)

    def lease(self, run_id: str) -> tuple[str, float] | None:
        """Who holds run ``run_id`` and until when (``None``: nobody, or an unknown run)."""
        query = select(agent_runs.c.lease_owner, agent_runs.c.lease_until).where(
            agent_runs.c.id == run_id, agent_runs.c.lease_owner.is_not(None)
        )
        with self._reading() as conn:
            row = conn.execute(query).first()
        return (str(row.lease_owner), float(row.lease_until)) if row is not None else None

    def drop_lease(self, run_id: str, owner: str) -> None:
        """Let go of run ``run_id`` if ``owner`` holds it."""
        with self._writing() as conn:
            conn.execute(
                update(agent_runs)
                .where(agent_runs.c.id == run_id, agent_runs.c.lease_owner == owner)
                .values(lease_owner=None, lease_until=None)
            )

    # -- steps --------------------------------------------------------------------------------

    def put_step(self, step: StepRecord) -> None:
        """Write ``step`` (replacing the row of the same run and index: a tool call moves
        from ``intended`` to ``pending`` to ``done``)."""
        values = _step_values(step)
        with self._writing() as conn:
            key = (agent_steps.c.run_id == step.run_id) & (agent_steps.c.idx == step.index)
            if conn.execute(select(agent_steps.c.idx).where(key)).first():
                conn.execute(update(agent_steps).where(key).values(values))
            else:
                conn.execute(insert(agent_steps).values(values))

    def steps(self, run_id: str) -> list[StepRecord]:
        query = select(agent_steps).where(agent_steps.c.run_id == run_id)
        with self._reading() as conn:
            return [_step(row) for row in conn.execute(query.order_by(agent_steps.c.idx))]

    # -- the budget ledger --------------------------------------------------------------------

    def add_budget_events(self, rows: Iterable[BudgetRow]) -> None:
        values = [{k: v for k, v in asdict(r).items() if k != "id"} for r in rows]
        if not values:
            return
        with self._writing() as conn:
            conn.execute(insert(agent_budget_events), values)

    def budget_events(self, run_id: str, *, tree: bool = True) -> list[BudgetRow]:
        """The ledger of ``run_id`` (and, with ``tree``, of every sub-agent run under it),
        in the order written."""
        where = agent_budget_events.c.run_id == run_id
        if tree:
            prefix = run_id.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            where = or_(where, agent_budget_events.c.run_id.like(prefix + ".%", escape="\\"))
        query = select(agent_budget_events).where(where).order_by(agent_budget_events.c.id)
        with self._reading() as conn:
            return [
                BudgetRow(
                    run_id=r.run_id,
                    hold=r.hold,
                    action=r.action,
                    resource=r.resource,
                    amount=float(r.amount),
                    ref=r.ref,
                    at=float(r.at),
                    id=int(r.id),
                )
                for r in conn.execute(query)
            ]

    # -- approvals ------------------------------------------------------------------------------

    def approval_status(self, approval_id: str) -> str | None:
        """``pending``, ``approved``, ``denied``, ``used`` or ``expired``; None: unknown."""
        query = select(approvals.c.status).where(approvals.c.id == approval_id)
        with self._reading() as conn:
            row = conn.execute(query).first()
        return str(row.status) if row is not None else None


def spent_by_subject(rows: Sequence[BudgetRow]) -> dict[str, dict[str, float]]:
    """Run id → resource → amount settled by that run itself (not its sub-agents)."""
    spent: dict[str, dict[str, float]] = {}
    for row in rows:
        if row.action == "settle":
            per = spent.setdefault(row.run_id, {})
            per[row.resource] = per.get(row.resource, 0.0) + row.amount
    return spent
