"""A run's budgets, reserved before every call and settled after, shared with sub-agents.

A run may spend ``tokens``, ``money_usd``, ``tool_calls`` and ``steps`` (and
``wall_time_s``, checked rather than reserved). Before each model call the runtime
reserves its most: the prompt's estimate plus ``max_output_tokens``, their price, one step;
before each tool call, one tool call. The call is not made when a reservation would go
over (:class:`~pilothouse.errors.BudgetExceeded`); afterwards the reservation is settled to
what the call really used and the rest returned.

This is governance's budget core (:class:`~pilothouse.governance.budgets.Budgets`, the one
behind key ≤ team ≤ organisation) with runs as subjects: a sub-agent's run reserves on its
own subject *and every ancestor's*, so what it spends is charged to its parent too, and no
reservation can pass any ancestor's limit. A sub-agent's limits are
``budget_share`` times what its parent has left (and no more than its own spec allows), so it
can never spend more than the parent has, whatever its own spec says.

Every reservation and settlement is handed to ``record`` (a :class:`BudgetEvent`): the
runtime writes them to the run's ledger in the store. Pure and synchronous: calls on one
event loop are atomic.
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from itertools import count
from typing import Literal

from pilothouse.config.agents import AgentBudgetSpec
from pilothouse.governance.budgets import Budgets, Charge

Resource = Literal["tokens", "money_usd", "tool_calls", "steps"]
RESOURCES: tuple[Resource, ...] = ("tokens", "money_usd", "tool_calls", "steps")


@dataclass(frozen=True, slots=True)
class Limits:
    """What one run may spend; ``None``: no limit of that kind (an ancestor's still apply)."""

    tokens: float | None = None
    money_usd: float | None = None
    tool_calls: float | None = None
    steps: float | None = None
    wall_time_s: float | None = None

    @classmethod
    def of(cls, spec: AgentBudgetSpec) -> Limits:
        return cls(spec.tokens, spec.money_usd, spec.tool_calls, spec.steps, spec.wall_time_s)

    @classmethod
    def from_dict(cls, values: Mapping[str, float | None]) -> Limits:
        return cls(**{k: values.get(k) for k in (*RESOURCES, "wall_time_s")})

    def as_dict(self) -> dict[str, float | None]:
        return {k: getattr(self, k) for k in (*RESOURCES, "wall_time_s")}

    def get(self, resource: Resource) -> float | None:
        value: float | None = getattr(self, resource)
        return value


@dataclass(frozen=True, slots=True)
class BudgetEvent:
    """One line of a run's ledger."""

    run_id: str
    hold: str
    action: Literal["reserve", "settle"]
    resource: Resource
    amount: float
    ref: str


@dataclass(frozen=True, slots=True)
class Hold:
    """What one call reserved, settled exactly once."""

    id: str
    ref: str
    charges: Mapping[Resource, Charge]


class RunBudget:
    """The budgets of one run, inside its ancestors' (see the module docstring)."""

    def __init__(
        self,
        run_id: str,
        limits: Limits,
        record: Callable[[BudgetEvent], None],
        *,
        parent: RunBudget | None = None,
    ) -> None:
        self.run_id = run_id
        self.limits = limits
        self._record = record
        self._parent = parent
        self._books: dict[Resource, Budgets] = (
            parent._books if parent is not None else {r: Budgets(r) for r in RESOURCES}
        )
        self._holds: Iterator[int] = parent._holds if parent is not None else count()
        self._epoch: str = parent._epoch if parent is not None else secrets.token_hex(3)
        """Distinguishes this process's holds from an earlier one's (a resumed run)."""

    @property
    def chain(self) -> list[RunBudget]:
        """This run, then its parent, up to the root."""
        found: list[RunBudget] = []
        node: RunBudget | None = self
        while node is not None:
            found.append(node)
            node = node._parent
        return found

    def spent(self, resource: Resource) -> float:
        """Spent and reserved by this run and its sub-agents."""
        return self._books[resource].committed(self.run_id)

    def remaining(self, resource: Resource) -> float | None:
        """The most this run may still reserve: the least any of its chain has left."""
        left: float | None = None
        for node in self.chain:
            limit = node.limits.get(resource)
            if limit is not None:
                here = max(0.0, limit - node.spent(resource))
                left = here if left is None else min(left, here)
        return left

    def slice(self, run_id: str, own: Limits, share: float, wall_left_s: float | None) -> Limits:
        """A sub-agent's limits: ``share`` of what this run has left, never above ``own``."""
        values: dict[str, float | None] = {}
        for resource in RESOURCES:
            left = self.remaining(resource)
            cap = None if left is None else share * left
            if resource in ("tool_calls", "steps") and cap is not None:
                cap = float(math.floor(cap))
            values[resource] = _least(own.get(resource), cap)
        values["wall_time_s"] = _least(own.wall_time_s, wall_left_s)
        return Limits.from_dict(values)

    def child(self, run_id: str, limits: Limits) -> RunBudget:
        """The budget of a sub-agent run (its spending is charged to this run too)."""
        return RunBudget(run_id, limits, self._record, parent=self)

    def seed(self, spent: Mapping[str, Mapping[str, float]]) -> None:
        """Start from the ledger: ``spent`` is what each run (id) spent itself; a run's
        total includes its sub-agents' (ids under it: ``parent.step``)."""
        totals: dict[str, dict[str, float]] = {r: {} for r in RESOURCES}
        for run, per in spent.items():
            parts = run.split(".")
            for depth in range(1, len(parts) + 1):
                subject = ".".join(parts[:depth])
                for resource, amount in per.items():
                    if resource in totals:
                        book = totals[resource]
                        book[subject] = book.get(subject, 0.0) + amount
        for resource in RESOURCES:
            self._books[resource].seed(totals[resource])

    def reserve(self, amounts: Mapping[Resource, float], ref: str) -> Hold:
        """Hold ``amounts`` on this run and every ancestor, all or nothing; raise
        :class:`~pilothouse.errors.BudgetExceeded` naming the first budget it would pass."""
        subjects = {
            resource: [(node.run_id, _limit(node.limits.get(resource))) for node in self.chain]
            for resource in amounts
        }
        charges: dict[Resource, Charge] = {}
        try:
            for resource, amount in amounts.items():
                charges[resource] = self._books[resource].reserve(subjects[resource], amount)
        except BaseException:
            for resource, charge in charges.items():
                self._books[resource].release(charge)
            raise
        hold = Hold(f"{self.run_id}#{self._epoch}-{next(self._holds)}", ref, charges)
        for resource, amount in amounts.items():
            self._record(BudgetEvent(self.run_id, hold.id, "reserve", resource, amount, ref))
        return hold

    def settle(self, hold: Hold, actual: Mapping[Resource, float]) -> None:
        """Charge what the call used (at most what it reserved) and free the rest; a
        resource missing from ``actual`` is charged nothing."""
        for resource, charge in hold.charges.items():
            used = min(max(0.0, actual.get(resource, 0.0)), charge.amount)
            self._books[resource].settle(charge, used)
            self._record(BudgetEvent(self.run_id, hold.id, "settle", resource, used, hold.ref))


def _limit(value: float | None) -> float:
    return math.inf if value is None else value


def _least(a: float | None, b: float | None) -> float | None:
    if a is None:
        return b
    if b is None:
        return a
    return min(a, b)
