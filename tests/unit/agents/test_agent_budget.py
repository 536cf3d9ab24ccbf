"""The run budget core: reservations held on the run and every ancestor, slices of what is
left, seeding from the ledger."""

from __future__ import annotations

import pytest

from pilothouse.agents.budget import BudgetEvent, Limits, RunBudget
from pilothouse.errors import BudgetExceeded


def test_agent_budget_child_reserves_on_its_parent_too() -> None:
    events: list[BudgetEvent] = []
    root = RunBudget("r", Limits(tokens=1000, tool_calls=5), events.append)
    hold = root.reserve({"tokens": 400}, "step 0 model")
    root.settle(hold, {"tokens": 300})
    limits = root.slice("r.1", Limits(tokens=10_000, tool_calls=100), 0.5, wall_left_s=None)
    assert (limits.tokens, limits.tool_calls) == (350, 2)  # half of what is left, floored calls
    child = root.child("r.1", limits)
    held = child.reserve({"tokens": 350}, "step 0 model")
    assert root.remaining("tokens") == 350  # the child's hold counts against the parent
    with pytest.raises(BudgetExceeded, match=r"budget of r\.1 exceeded"):
        child.reserve({"tokens": 1}, "step 2 model")
    child.settle(held, {"tokens": 500})  # never more than reserved
    assert root.spent("tokens") == 650
    assert child.spent("tokens") == 350
    assert [(e.run_id, e.action, e.amount) for e in events] == [
        ("r", "reserve", 400), ("r", "settle", 300),
        ("r.1", "reserve", 350), ("r.1", "settle", 350),
    ]  # fmt: skip


def test_agent_budget_parent_limit_binds_a_child_without_one() -> None:
    root = RunBudget("r", Limits(tokens=100), lambda _: None)
    child = root.child("r.3", Limits())
    with pytest.raises(BudgetExceeded, match="budget of r exceeded"):
        child.reserve({"tokens": 101}, "x")
    assert root.remaining("tokens") == 100  # nothing stays held after a refusal


def test_agent_budget_seeded_from_the_ledger_counts_sub_agents_in_their_parents() -> None:
    root = RunBudget("r", Limits(tokens=1000), lambda _: None)
    root.seed({"r": {"tokens": 200}, "r.1": {"tokens": 300}, "r.1.4": {"tokens": 100}})
    assert root.spent("tokens") == 600
    child = root.child("r.1", Limits(tokens=500))
    assert child.spent("tokens") == 400
    assert child.remaining("tokens") == 100
