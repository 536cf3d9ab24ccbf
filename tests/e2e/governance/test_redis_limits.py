"""Rate limits shared through a real Redis: the in-process limiter's semantics, exactly.

Each test runs against a redis-server started on loopback (:class:`RedisServer`), under a
key prefix of its own. Parity tests pass the caller's ``now`` (``time_source="caller"``) so
they replay the in-process limiter's unit tests; the concurrent tests stand two gateway
replicas up as two clients and two backends on one Redis.
"""

from __future__ import annotations

import asyncio
import random
import secrets
import time
from collections.abc import AsyncIterator, Iterator
from uuid import uuid4

import pytest
import redis.asyncio as aioredis

from pilothouse.errors import LimitStoreUnavailable, RateLimited
from pilothouse.governance.limits import Limit, RateLimiter, Reservation
from pilothouse.governance.redis_backend import UNHELD, RedisLimits, TimeSource, connect
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


@pytest.fixture
def limiter(client: aioredis.Redis, prefix: str) -> RedisLimits:
    return RedisLimits(client, prefix=prefix, time_source="caller")


async def test_redis_tokens_per_minute_reserve_the_most_and_settle_what_was_used(
    limiter: RedisLimits,
) -> None:
    key = [("key:a", Limit(tokens_per_min=1000))]
    first = await limiter.reserve(key, 600, now=0.0)
    with pytest.raises(RateLimited, match="1000 tokens per minute") as refused:
        await limiter.reserve(key, 600, now=1.0)
    assert refused.value.retry_after == 60.0
    await limiter.settle(first, 150, now=2.0)
    assert await limiter.usage("key:a", 2.0) == (1, 150, 0)
    await limiter.reserve(key, 600, now=3.0)
    assert (await limiter.usage("key:a", 3.0))[1] == 750


async def test_redis_window_rolls_second_by_second(limiter: RedisLimits) -> None:
    key = [("k", Limit(requests_per_min=2))]
    await limiter.settle(await limiter.reserve(key, 1, now=0.5), 1, now=0.6)
    await limiter.settle(await limiter.reserve(key, 1, now=30.2), 1, now=30.3)
    with pytest.raises(RateLimited, match="2 requests per minute"):
        await limiter.reserve(key, 1, now=59.9)
    await limiter.reserve(key, 1, now=60.5)
    assert (await limiter.usage("k", 60.5))[0] == 2


async def test_redis_all_or_nothing_across_key_team_and_model(limiter: RedisLimits) -> None:
    chain = [("key:a", Limit(concurrent=5)), ("team:t", Limit(concurrent=1))]
    held = await limiter.reserve(chain, 10, now=0.0)
    with pytest.raises(RateLimited, match=r"team:t.*concurrent") as refused:
        await limiter.reserve(chain, 10, now=0.0)
    assert refused.value.status == 429
    assert refused.value.retry_after == 1.0
    assert await limiter.usage("key:a", 0.0) == (1, 10, 1)
    await limiter.release(held, now=0.5)
    assert await limiter.usage("key:a", 0.5) == (0, 0, 0)
    assert await limiter.usage("team:t", 0.5) == (0, 0, 0)
    await limiter.release(held, now=0.6)  # twice is a no-op
    await limiter.settle(held, 99, now=0.7)  # and so is a settle after it
    assert await limiter.usage("team:t", 0.7) == (0, 0, 0)


async def test_redis_a_settle_after_the_window_corrects_nothing(limiter: RedisLimits) -> None:
    key = [("k", Limit(tokens_per_min=100))]
    held = await limiter.reserve(key, 80, now=10.0)
    await limiter.settle(held, 5, now=75.0)  # second 10 left the window at 70
    assert await limiter.usage("k", 75.0) == (0, 0, 0)
    await limiter.reserve(key, 100, now=75.0)


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_redis_random_sequences_match_the_in_process_limiter(
    client: aioredis.Redis, prefix: str, seed: int
) -> None:
    """The same reserves, settles, releases and clock steps, on both: same answers."""
    rng = random.Random(seed)
    shared = RedisLimits(client, prefix=prefix, time_source="caller", lease_s=100_000)
    local = RateLimiter()
    limits = {
        "key:a": Limit(requests_per_min=8, tokens_per_min=900, concurrent=4),
        "team:t": Limit(tokens_per_min=1500, concurrent=6),
        "model:m": Limit(requests_per_min=12),
    }
    held: list[tuple[Reservation, Reservation]] = []
    now = 0.0
    for _ in range(150):
        now += rng.choice([0.0, 0.3, 1.0, 7.5, 21.0])
        op = rng.random()
        if op < 0.55:
            subjects = [(s, limits[s]) for s in sorted(rng.sample(list(limits), rng.randint(1, 3)))]
            tokens = rng.randint(1, 300)
            outcome = await _reserve_both(local, shared, subjects, tokens, now)
            if outcome is not None:
                held.append(outcome)
        elif held:
            mine, theirs = held.pop(rng.randrange(len(held)))
            if op < 0.85:
                used = rng.randint(0, 400)
                local.settle(mine, used, now)
                await shared.settle(theirs, used, now)
            else:
                local.release(mine, now)
                await shared.release(theirs, now)
        for subject in limits:
            assert await shared.usage(subject, now) == local.usage(subject, now), subject


async def _reserve_both(
    local: RateLimiter,
    shared: RedisLimits,
    subjects: list[tuple[str, Limit]],
    tokens: int,
    now: float,
) -> tuple[Reservation, Reservation] | None:
    """Both admit (their reservations), or both refuse with the same words (None)."""
    try:
        mine = local.reserve(subjects, tokens, now)
    except RateLimited as exc:
        expected = str(exc)
    else:
        return mine, await shared.reserve(subjects, tokens, now)
    with pytest.raises(RateLimited) as refused:
        await shared.reserve(subjects, tokens, now)
    assert str(refused.value) == expected
    return None


@pytest.mark.parametrize("time_source", ["redis", "caller"])
@pytest.mark.parametrize(
    ("limit", "tokens", "admits"),
    [
        (Limit(tokens_per_min=10_000, concurrent=200), 100, 100),
        (Limit(requests_per_min=123), 1, 123),
        (Limit(concurrent=37), 1, 37),
    ],
    ids=["tokens", "requests", "slots"],
)
async def test_redis_500_concurrent_requests_from_two_replicas_admit_exactly_the_limit(
    redis_server: RedisServer,
    prefix: str,
    time_source: TimeSource,
    limit: Limit,
    tokens: int,
    admits: int,
) -> None:
    """Two clients, two backends: two gateway replicas sharing one Redis."""
    replicas = [
        RedisLimits(connect(redis_server.url), prefix=prefix, time_source=time_source)
        for _ in range(2)
    ]
    subject = [("key:a", limit)]
    admitted: list[Reservation] = []
    refused = 0

    async def request(i: int) -> None:
        nonlocal refused
        try:
            held = await replicas[i % 2].reserve(subject, tokens, now=1.0)
        except RateLimited:
            refused += 1
            return
        admitted.append(held)

    try:
        await asyncio.gather(*(request(i) for i in range(500)))
        assert len(admitted) == admits  # never more, and the limit is reached
        assert refused == 500 - admits
        usage = await replicas[0].usage("key:a", 1.5)
        assert usage == (admits, admits * tokens, admits)
        await asyncio.gather(
            *(replicas[i % 2].settle(h, tokens, 1.5) for i, h in enumerate(admitted))
        )
        assert (await replicas[1].usage("key:a", 1.5))[2] == 0
    finally:
        for replica in replicas:
            await replica.aclose()


async def test_redis_a_crashed_replica_frees_its_slots_when_the_lease_ends(
    redis_server: RedisServer, client: aioredis.Redis, prefix: str
) -> None:
    crashed = RedisLimits(
        connect(redis_server.url), prefix=prefix, time_source="caller", lease_s=30
    )
    key = [("key:a", Limit(concurrent=1, tokens_per_min=1000))]
    await crashed.reserve(key, 400, now=100.0)
    await crashed.aclose()  # dies without settling
    survivor = RedisLimits(client, prefix=prefix, time_source="caller", lease_s=30)
    with pytest.raises(RateLimited, match="concurrent"):
        await survivor.reserve(key, 10, now=129.0)
    await survivor.reserve(key, 10, now=130.5)  # the lease ended at 130
    assert await survivor.usage("key:a", 130.5) == (2, 410, 1)
    # Every key expires by itself: nothing a dead replica leaves behind lives forever.
    keys = [k async for k in client.scan_iter(match=f"{prefix}*")]
    assert len(keys) == 4  # window, in-flight, and one record per reservation
    for k in keys:
        ttl_ms = await client.pttl(k)
        assert 0 < ttl_ms <= (30 + 120) * 1000, k


async def test_redis_a_retried_reserve_holds_once(
    limiter: RedisLimits, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reply lost after the script ran, and the call sent again with the same id."""
    monkeypatch.setattr(secrets, "randbits", lambda bits: 42)
    key = [("k", Limit(concurrent=1))]
    first = await limiter.reserve(key, 50, now=5.0)
    again = await limiter.reserve(key, 50, now=6.0)
    assert again == first
    assert await limiter.usage("k", 6.0) == (1, 50, 1)


async def test_redis_out_of_reach_is_a_503_unless_failing_open(prefix: str) -> None:
    with RedisServer() as server:
        url = server.url
    key = [("k", Limit(concurrent=1))]
    closed = RedisLimits(connect(url, timeout_s=0.5), prefix=prefix)
    with pytest.raises(LimitStoreUnavailable) as down:
        await closed.reserve(key, 1, now=0.0)
    assert down.value.status == 503
    await closed.aclose()
    opened = RedisLimits(connect(url, timeout_s=0.5), prefix=prefix, fail_open=True)
    unheld = await opened.reserve(key, 1, now=0.0)
    assert unheld.id == UNHELD
    await opened.settle(unheld, 1, now=0.1)
    await opened.release(unheld, now=0.1)
    await opened.aclose()


async def test_redis_restarted_serves_again(prefix: str) -> None:
    """An outage mid-traffic: refused while down, served after (scripts reloaded)."""
    key = [("k", Limit(concurrent=5))]
    with RedisServer() as server:
        limiter = RedisLimits(connect(server.url, timeout_s=0.5), prefix=prefix)
        held = await limiter.reserve(key, 1, now=0.0)
        server.stop()
        with pytest.raises(LimitStoreUnavailable):
            await limiter.settle(held, 1, now=0.0)
        with pytest.raises(LimitStoreUnavailable):
            await limiter.reserve(key, 1, now=0.0)
        server.start()
        await limiter.reserve(key, 1, now=0.0)
        await limiter.aclose()


async def test_redis_reserve_and_settle_latency(limiter: RedisLimits) -> None:
    """Not a threshold: prints what one reserve + settle costs on loopback (pytest -s)."""
    chain = [("key:a", Limit(tokens_per_min=10**9, concurrent=10)), ("team:t", Limit())]
    reserve_s: list[float] = []
    settle_s: list[float] = []
    for i in range(500):
        start = time.perf_counter()
        held = await limiter.reserve(chain, 100, now=float(i) / 100)
        middle = time.perf_counter()
        await limiter.settle(held, 50, now=float(i) / 100)
        reserve_s.append(middle - start)
        settle_s.append(time.perf_counter() - middle)
    reserve_s.sort()
    settle_s.sort()
    print(
        f"\nredis limits, 2 subjects: reserve p50 {reserve_s[250] * 1e6:.0f} us "
        f"p99 {reserve_s[495] * 1e6:.0f} us; settle p50 {settle_s[250] * 1e6:.0f} us "
        f"p99 {settle_s[495] * 1e6:.0f} us"
    )
    assert await limiter.usage("key:a", 5.0) == (500, 500 * 50, 0)
