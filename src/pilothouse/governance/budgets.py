"""Budgets in tokens or money: reserved before the call, settled after, never overrun.

A request reserves, on every budget above it at once (key ≤ team ≤ organisation), the most
it can cost: its prompt plus ``max_tokens`` of output at the model's prices. Over any
budget, it is refused (:class:`~pilothouse.errors.BudgetExceeded`, 429) before any engine
work; the request that crosses a limit is never served, unlike checks made after the
response. When it ends, :meth:`Budgets.settle` charges what it actually cost and returns
the rest of the reservation; a request that did no engine work is released in full.

Like the rate limiter, every call is synchronous, so on one event loop reservations are
atomic: concurrent requests cannot together spend past a budget.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import count
from typing import NamedTuple

from pilothouse.errors import BudgetExceeded


@dataclass(frozen=True, slots=True)
class Price:
    """Cost of a model per million prompt and completion tokens (in the budget's unit)."""

    prompt_per_million: float = 0.0
    completion_per_million: float = 0.0

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        return (
            prompt_tokens * self.prompt_per_million
            + completion_tokens * self.completion_per_million
        ) / 1_000_000


TOKENS = Price(1_000_000.0, 1_000_000.0)
"""A budget counted in tokens: every token costs one."""


class Charge(NamedTuple):
    """One request's hold on its budgets until it is settled or released (a named tuple:
    one is made per request, at a quarter of a frozen dataclass's cost)."""

    id: int
    subjects: tuple[str, ...]
    amount: float


class Budgets:
    """Spent and reserved amounts per subject (see the module docstring)."""

    def __init__(self, unit: str = "tokens") -> None:
        self.unit = unit
        self._spent: dict[str, float] = {}
        self._reserved: dict[str, float] = {}
        self._open: dict[int, Charge] = {}
        self._ids = count()

    def reserve(self, subjects: Sequence[tuple[str, float]], amount: float) -> Charge:
        """Hold ``amount`` on every ``(subject, limit)``, or raise :class:`BudgetExceeded`
        for the first one it would overrun (nothing is held then)."""
        spent, reserved = self._spent, self._reserved
        for subject, limit in subjects:
            left = limit - (spent.get(subject, 0.0) + reserved.get(subject, 0.0))
            if amount > left:
                raise BudgetExceeded(subject, max(0.0, left), amount, self.unit)
        for subject, _ in subjects:
            reserved[subject] = reserved.get(subject, 0.0) + amount
        charge = Charge(next(self._ids), tuple([s for s, _ in subjects]), amount)
        self._open[charge.id] = charge
        return charge

    def settle(self, charge: Charge, actual: float) -> None:
        """Charge what the request cost (at most what was reserved) and free the rest."""
        if self._open.pop(charge.id, None) is None:
            return  # settled or released already: never twice
        spent = min(max(0.0, actual), charge.amount)
        reserved, total = self._reserved, self._spent
        for subject in charge.subjects:
            reserved[subject] -= charge.amount
            total[subject] = total.get(subject, 0.0) + spent

    def release(self, charge: Charge) -> None:
        """The request did no engine work: nothing is charged."""
        self.settle(charge, 0.0)

    def seed(self, spent: Mapping[str, float]) -> None:
        """Start subjects not seen yet from what they already spent (read from the ledger
        after a restart); a subject already counting keeps its own figure."""
        for subject, amount in spent.items():
            self._spent.setdefault(subject, amount)

    def spent(self, subject: str) -> float:
        return self._spent.get(subject, 0.0)

    def totals(self) -> dict[str, float]:
        """What every subject spent (a copy)."""
        return dict(self._spent)

    def committed(self, subject: str) -> float:
        """Spent plus reserved by requests still running."""
        return self._spent.get(subject, 0.0) + self._reserved.get(subject, 0.0)
