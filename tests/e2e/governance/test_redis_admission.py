"""Limits and both budgets reserved in one Redis call (``RedisAdmission``): the three
backends' semantics, all or nothing across them, one round trip each way."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from uuid import uuid4

import pytest
import redis.asyncio as aioredis

from pilothouse.errors import BudgetExceeded, LimitStoreUnavailable, RateLimited
from pilothouse.governance.limits import Limit
from pilothouse.governance.redis_admission import RedisAdmission
from pilothouse.governance.redis_backend import UNHELD, RedisBudgets, RedisLimits, connect
from pilothouse.testing.redis_server import RedisServer

pytestmark = pytest.mark.e2e

NOW = 1_000_000.0


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


@pytest.fixture
async def client(redis_server: RedisServer) -> AsyncIterator[aioredis.Redis]:
    client = connect(redis_server.url)
    yield client
    await client.aclose()


def _backends(
    client: aioredis.Redis, prefix: str | None = None, fail_open: bool = False
) -> tuple[RedisLimits, RedisBudgets, RedisBudgets, RedisAdmission]:
    prefix = prefix or f"test-{uuid4().hex[:8]}:"
    limits = RedisLimits(client, prefix=prefix + "l:", time_source="caller", fail_open=fail_open)
    tokens = RedisBudgets(client, "tokens", prefix=prefix + "t:", fail_open=fail_open)
    money = RedisBudgets(client, "USD", prefix=prefix + "m:", fail_open=fail_open)
    return limits, tokens, money, RedisAdmission(limits, tokens, money)


class _Counted:
    """Counts the commands a client sends (round trips: one command per call here)."""

    def __init__(self, client: aioredis.Redis) -> None:
        self.calls = 0
        self._execute = client.execute_command

        async def counted(*args: object, **options: object) -> object:
            self.calls += 1
            return await self._execute(*args, **options)

        client.execute_command = counted  # type: ignore[method-assign]


async def test_redis_admission_reserves_and_settles_all_three_in_one_call_each(
    client: aioredis.Redis,
) -> None:
    limits, tokens, money, admission = _backends(client)
    chain = ([("k", Limit(10, 1000, 5))], 100, [("t", 1e6)], [("o", 5.0)], 1.0, NOW)
    await admission.settle(*await admission.reserve(*chain), 100, 1.0, NOW)  # scripts loaded
    counted = _Counted(client)
    reservation, token_charge, money_charge = await admission.reserve(*chain)
    assert counted.calls == 1
    assert reservation is not None
    assert token_charge is not None
    assert money_charge is not None
    assert await limits.usage("k", NOW) == (2, 200, 1)
    assert await tokens.committed("t") == 200.0
    assert await money.committed("o") == 2.0
    counted.calls = 0
    await admission.settle(reservation, token_charge, money_charge, 30, 0.25, NOW)
    assert counted.calls == 1
    assert await limits.usage("k", NOW) == (2, 130, 0)  # tokens corrected, the slot freed
    assert await tokens.spent("t") == 130.0
    assert await money.spent("o") == 1.25
    assert await money.committed("o") == 1.25
    # settled once: a second settle (a retry) changes nothing
    await admission.settle(reservation, token_charge, money_charge, 30, 0.25, NOW)
    assert await tokens.spent("t") == 130.0


async def test_redis_admission_is_all_or_nothing(client: aioredis.Redis) -> None:
    limits, tokens, money, admission = _backends(client)
    chain = ([("k", Limit(10, 1000, 5))], 100, [("t", 1e6)])
    await admission.reserve(*chain, [("o", 1.5)], 1.0, NOW)
    # The money budget refuses: the rate-limit slot and the tokens come back in that call.
    with pytest.raises(BudgetExceeded, match=r"o exceeded: 0\.5 USD left"):
        await admission.reserve(*chain, [("o", 1.5)], 1.0, NOW)
    assert await limits.usage("k", NOW) == (1, 100, 1)
    assert await tokens.committed("t") == 100.0
    assert await money.committed("o") == 1.0
    # The token budget refuses: nothing is held on the limits either.
    with pytest.raises(BudgetExceeded, match="t2 exceeded"):
        await admission.reserve(chain[0], 100, [("t2", 50.0)], [], 0.0, NOW)
    assert await limits.usage("k", NOW) == (1, 100, 1)
    # The limits refuse first (two concurrent at most): nothing else is looked at.
    with pytest.raises(RateLimited, match="concurrent"):
        await admission.reserve([("c", Limit(concurrent=0))], 100, [("t3", 1e6)], [], 0.0, NOW)
    assert await tokens.committed("t3") == 0.0


async def test_redis_admission_release_gives_everything_back(client: aioredis.Redis) -> None:
    limits, tokens, money, admission = _backends(client)
    one = Limit(1, 1000, 1)
    held = await admission.reserve([("k", one)], 100, [("t", 1e6)], [("o", 5.0)], 1.0, NOW)
    with pytest.raises(RateLimited):
        await admission.reserve([("k", one)], 100, [], [], 0.0, NOW)
    await admission.release(*held, NOW)
    assert await limits.usage("k", NOW) == (0, 0, 0)
    assert await tokens.committed("t") == 0.0
    assert await money.committed("o") == 0.0
    await admission.reserve([("k", one)], 100, [], [], 0.0, NOW)


async def test_redis_admission_skips_the_parts_without_subjects(client: aioredis.Redis) -> None:
    *_, admission = _backends(client)
    assert await admission.reserve([], 100, [], [], 0.0, NOW) == (None, None, None)
    reservation, token_charge, money_charge = await admission.reserve(
        [], 100, [("t", 1e6)], [], 0.0, NOW
    )
    assert reservation is None
    assert money_charge is None
    assert token_charge is not None
    await admission.settle(None, token_charge, None, 10, 0.0, NOW)


async def test_redis_admission_concurrent_requests_never_overrun(
    client: aioredis.Redis, redis_server: RedisServer
) -> None:
    # 200 requests at once through two "replicas" (two clients), a budget for 50 of them:
    # exactly 50 are held, on every counter.
    prefix = f"test-{uuid4().hex[:8]}:"
    limits, _, money, first = _backends(client, prefix)
    other = connect(redis_server.url)
    *_, second = _backends(other, prefix)
    chain = ([("k", Limit(None, None, 1000))], 10, [("t", 500.0)], [("o", 1e6)], 0.01, NOW)
    results = await asyncio.gather(
        *((first if i % 2 else second).reserve(*chain) for i in range(200)),
        return_exceptions=True,
    )
    await other.aclose()
    held = [r for r in results if not isinstance(r, BaseException)]
    assert len(held) == 50
    assert all(isinstance(r, BudgetExceeded) for r in results if isinstance(r, BaseException))
    assert await limits.usage("k", NOW) == (50, 500, 50)
    assert await money.committed("o") == pytest.approx(0.5)


async def test_redis_admission_fails_closed_or_open(redis_server: RedisServer) -> None:
    down = connect("redis://127.0.0.1:1/0", timeout_s=0.2)
    *_, closed = _backends(down)
    with pytest.raises(LimitStoreUnavailable):
        await closed.reserve([("k", Limit(1))], 10, [("t", 1.0)], [], 0.0, NOW)
    *_, opened = _backends(down, fail_open=True)
    reservation, token_charge, money_charge = await opened.reserve(
        [("k", Limit(1))], 10, [("t", 1.0)], [], 0.0, NOW
    )
    assert reservation is not None
    assert reservation.id == UNHELD
    assert token_charge is not None
    assert token_charge.id == UNHELD
    assert money_charge is None
    await opened.settle(reservation, token_charge, money_charge, 5, 0.0, NOW)  # nothing held
    await down.aclose()
