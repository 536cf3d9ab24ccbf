"""Budgets shared through a real Redis: the in-process budgets' semantics, exactly.

Each test runs against a redis-server started on loopback, under a key prefix of its own;
the concurrent test stands two gateway replicas up as two clients and two backends.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Iterator
from uuid import uuid4

import pytest
import redis.asyncio as aioredis

from pilothouse.errors import BudgetExceeded, LimitStoreUnavailable
from pilothouse.governance.budgets import TOKENS, Budgets, Charge, Price
from pilothouse.governance.redis_backend import UNHELD, RedisBudgets, connect, redis_backends
from pilothouse.testing.redis_server import RedisServer

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


@pytest.fixture
def prefix() -> str:
    return f"test-{uuid4().hex[:8]}:"


@pytest.fixture
async def client(redis_server: RedisServer) -> AsyncIterator[aioredis.Redis]:
    client = connect(redis_server.url)
    yield client
    await client.aclose()


async def test_redis_a_request_that_could_overrun_is_refused_before_any_work(
    client: aioredis.Redis, prefix: str
) -> None:
    budgets = RedisBudgets(client, "USD", prefix=prefix)
    price = Price(prompt_per_million=1.0, completion_per_million=3.0)
    most = price.cost(1000, 1000)  # 0.004
    chain = [("key:a", 1.0), ("team:t", 0.01)]
    first = await budgets.reserve(chain, most)
    second = await budgets.reserve(chain, most)
    with pytest.raises(BudgetExceeded, match=r"team:t exceeded: 0\.002 USD left") as refused:
        await budgets.reserve(chain, most)
    assert refused.value.status == 429
    assert refused.value.code == "insufficient_quota"
    assert await budgets.committed("key:a") == pytest.approx(0.008)  # the refused: nothing
    await budgets.settle(first, price.cost(1000, 100))
    await budgets.release(second)
    assert await budgets.spent("team:t") == pytest.approx(0.0013)
    assert await budgets.committed("key:a") == pytest.approx(0.0013)
    await budgets.reserve(chain, most)


async def test_redis_settle_never_charges_more_than_reserved_nor_twice(
    client: aioredis.Redis, prefix: str
) -> None:
    budgets = RedisBudgets(client, "tokens", prefix=prefix)
    charge = await budgets.reserve([("k", 100.0)], TOKENS.cost(10, 20))
    await budgets.settle(charge, 1_000.0)
    await budgets.settle(charge, 1_000.0)
    await budgets.release(charge)
    assert await budgets.spent("k") == 30.0
    assert await budgets.committed("k") == 30.0


async def test_redis_seed_starts_only_subjects_not_yet_counting(
    client: aioredis.Redis, prefix: str
) -> None:
    budgets = RedisBudgets(client, "tokens", prefix=prefix)
    await budgets.settle(await budgets.reserve([("counted", 1e6)], 40.0), 40.0)
    held = await budgets.reserve([("reserved-only", 1e6)], 7.0)
    await budgets.seed({"counted": 1000.0, "reserved-only": 5.0, "new": 60.0})
    await budgets.seed({"new": 999.0})  # a second replica starting later: no rewind
    assert await budgets.spent("counted") == 40.0
    assert await budgets.spent("reserved-only") == 5.0
    assert await budgets.committed("reserved-only") == 12.0
    assert await budgets.spent("new") == 60.0
    with pytest.raises(BudgetExceeded):
        await budgets.reserve([("new", 100.0)], 41.0)
    await budgets.release(held)


@pytest.mark.parametrize("seed", [1, 2])
async def test_redis_random_sequences_match_the_in_process_budgets(
    client: aioredis.Redis, prefix: str, seed: int
) -> None:
    rng = random.Random(seed)
    shared = RedisBudgets(client, "USD", prefix=prefix)
    local = Budgets("USD")
    limits = {"key:a": 0.05, "team:t": 0.08, "org:o": 0.2}
    held: list[tuple[Charge, Charge]] = []
    for _ in range(150):
        op = rng.random()
        if op < 0.5:
            chain = [(s, limits[s]) for s in sorted(rng.sample(list(limits), rng.randint(1, 3)))]
            amount = rng.choice([0.001, 0.0025, 0.004, 0.01, 0.013])
            outcome = await _reserve_both(local, shared, chain, amount)
            if outcome is not None:
                held.append(outcome)
        elif op < 0.95 and held:
            mine, theirs = held.pop(rng.randrange(len(held)))
            actual = rng.uniform(-0.001, 0.015)
            local.settle(mine, actual)
            await shared.settle(theirs, actual)
        elif op >= 0.95:
            spent = {s: rng.uniform(0, 0.01) for s in limits}
            local.seed(spent)
            await shared.seed(spent)
        for subject in limits:
            assert await shared.spent(subject) == pytest.approx(local.spent(subject), abs=1e-12)
            assert await shared.committed(subject) == pytest.approx(
                local.committed(subject), abs=1e-12
            )


async def _reserve_both(
    local: Budgets, shared: RedisBudgets, chain: list[tuple[str, float]], amount: float
) -> tuple[Charge, Charge] | None:
    """Both hold (their charges), or both refuse naming the same budget (None)."""
    try:
        mine = local.reserve(chain, amount)
    except BudgetExceeded as exc:
        expected = str(exc)
    else:
        return mine, await shared.reserve(chain, amount)
    with pytest.raises(BudgetExceeded) as refused:
        await shared.reserve(chain, amount)
    assert str(refused.value) == expected
    return None


async def test_redis_500_concurrent_requests_from_two_replicas_never_spend_past_the_budget(
    redis_server: RedisServer, prefix: str
) -> None:
    replicas = [redis_backends(redis_server.url, "tokens", prefix=prefix)[1] for _ in range(2)]
    served = 0

    async def request(i: int) -> None:
        nonlocal served
        try:
            charge = await replicas[i % 2].reserve([("team:t", 5_000.0)], 100.0)
        except BudgetExceeded:
            return
        served += 1
        await asyncio.sleep(0.001 * (i % 5))
        await replicas[i % 2].settle(charge, 100.0)

    try:
        await asyncio.gather(*(request(i) for i in range(500)))
        assert served == 50  # exactly: never more, and the budget is used up
        assert await replicas[0].spent("team:t") == 5_000.0
        assert await replicas[1].committed("team:t") == 5_000.0
    finally:
        for replica in replicas:
            await replica.aclose()


async def test_redis_a_crashed_replica_gives_its_reservation_back_when_the_lease_ends(
    redis_server: RedisServer, client: aioredis.Redis, prefix: str
) -> None:
    """Budgets keep leases on the Redis server's clock: this test waits for one (2 s)."""
    crashed = RedisBudgets(connect(redis_server.url), "tokens", prefix=prefix, lease_s=2.0)
    budget = [("team:t", 100.0)]
    lost = await crashed.reserve(budget, 100.0)
    survivor = RedisBudgets(client, "tokens", prefix=prefix, lease_s=2.0)
    with pytest.raises(BudgetExceeded):
        await survivor.reserve(budget, 1.0)
    deadline = time.monotonic() + 30.0
    while True:
        try:
            await survivor.reserve(budget, 1.0)
            break
        except BudgetExceeded:
            assert time.monotonic() < deadline, "the lease never ended"
            await asyncio.sleep(0.2)
    assert await survivor.committed("team:t") == 1.0
    await crashed.settle(lost, 30.0)  # a late settle still charges what was spent
    assert await survivor.spent("team:t") == 30.0
    assert await survivor.committed("team:t") == 31.0
    await crashed.aclose()
    keys = [k async for k in client.scan_iter(match=f"{prefix}*")]
    for k in keys:
        assert await client.pttl(k) > 0, k


async def test_redis_budgets_out_of_reach_are_a_503_unless_failing_open(prefix: str) -> None:
    with RedisServer() as server:
        url = server.url
    closed = RedisBudgets(connect(url, timeout_s=0.5), "USD", prefix=prefix)
    with pytest.raises(LimitStoreUnavailable) as down:
        await closed.reserve([("t", 1.0)], 0.1)
    assert down.value.status == 503
    with pytest.raises(LimitStoreUnavailable):
        await closed.seed({"t": 0.5})
    await closed.aclose()
    opened = RedisBudgets(connect(url, timeout_s=0.5), "USD", prefix=prefix, fail_open=True)
    unheld = await opened.reserve([("t", 1.0)], 0.1)
    assert unheld.id == UNHELD
    await opened.settle(unheld, 0.1)
    await opened.aclose()
