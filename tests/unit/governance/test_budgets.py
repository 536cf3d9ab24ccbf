"""Budgets: the most a request can cost is held before the call; never overrun."""

from __future__ import annotations

import asyncio

import pytest

from pilothouse.errors import BudgetExceeded
from pilothouse.governance.budgets import TOKENS, Budgets, Price


def test_a_request_that_could_overrun_is_refused_before_any_work() -> None:
    budgets = Budgets("USD")
    price = Price(prompt_per_million=1.0, completion_per_million=3.0)
    most = price.cost(1000, 1000)  # 0.004
    chain = [("key:a", 1.0), ("team:t", 0.01)]
    first = budgets.reserve(chain, most)
    second = budgets.reserve(chain, most)
    with pytest.raises(BudgetExceeded, match="team:t") as refused:
        budgets.reserve(chain, most)
    assert refused.value.status == 429
    assert refused.value.code == "insufficient_quota"
    budgets.settle(first, price.cost(1000, 100))  # used less than reserved
    budgets.release(second)  # failed before the engine
    assert budgets.spent("team:t") == pytest.approx(0.0013)
    assert budgets.committed("key:a") == pytest.approx(0.0013)
    budgets.reserve(chain, most)  # room again


def test_settle_never_charges_more_than_reserved_nor_twice() -> None:
    budgets = Budgets()
    charge = budgets.reserve([("k", 100.0)], TOKENS.cost(10, 20))
    budgets.settle(charge, 1_000.0)
    budgets.settle(charge, 1_000.0)
    assert budgets.spent("k") == 30.0
    assert budgets.committed("k") == 30.0


async def test_500_concurrent_requests_never_spend_past_the_budget() -> None:
    budgets = Budgets()
    served = 0

    async def request(i: int) -> None:
        nonlocal served
        try:
            charge = budgets.reserve([("team:t", 5_000.0)], 100.0)
        except BudgetExceeded:
            return
        served += 1
        await asyncio.sleep(0.001 * (i % 5))
        budgets.settle(charge, 100.0)

    await asyncio.gather(*(request(i) for i in range(500)))
    assert served == 50
    assert budgets.spent("team:t") == 5_000.0
