"""Token rate limits: reserved before, settled after, never exceeded by concurrent requests."""

from __future__ import annotations

import asyncio

import pytest

from pilothouse.errors import RateLimited
from pilothouse.governance.limits import Limit, RateLimiter


def test_tokens_per_minute_reserve_the_most_and_settle_what_was_used() -> None:
    limiter = RateLimiter()
    key = [("key:a", Limit(tokens_per_min=1000))]
    first = limiter.reserve(key, 600, now=0.0)  # prompt + max_tokens
    with pytest.raises(RateLimited, match="1000 tokens per minute"):
        limiter.reserve(key, 600, now=1.0)
    limiter.settle(first, 150, now=2.0)  # it used far less
    assert limiter.usage("key:a", 2.0) == (1, 150, 0)
    limiter.reserve(key, 600, now=3.0)  # room again
    assert limiter.usage("key:a", 3.0)[1] == 750


def test_the_window_rolls_second_by_second() -> None:
    limiter = RateLimiter()
    key = [("k", Limit(requests_per_min=2))]
    limiter.settle(limiter.reserve(key, 1, now=0.5), 1, now=0.6)
    limiter.settle(limiter.reserve(key, 1, now=30.2), 1, now=30.3)
    with pytest.raises(RateLimited, match="2 requests per minute"):
        limiter.reserve(key, 1, now=59.9)
    limiter.reserve(key, 1, now=60.5)  # the first request's second left the window
    assert limiter.usage("k", 60.5)[0] == 2


def test_all_or_nothing_across_key_team_and_model() -> None:
    limiter = RateLimiter()
    chain = [("key:a", Limit(concurrent=5)), ("team:t", Limit(concurrent=1))]
    held = limiter.reserve(chain, 10, now=0.0)
    with pytest.raises(RateLimited, match="team:t") as refused:
        limiter.reserve(chain, 10, now=0.0)
    assert refused.value.status == 429
    assert limiter.usage("key:a", 0.0) == (1, 10, 1)  # the refused one holds nothing
    limiter.release(held, now=0.5)
    assert limiter.usage("key:a", 0.5) == (0, 0, 0)
    assert limiter.usage("team:t", 0.5) == (0, 0, 0)
    limiter.release(held, now=0.6)  # twice is a no-op
    assert limiter.usage("team:t", 0.6) == (0, 0, 0)


async def test_500_concurrent_requests_never_over_admit() -> None:
    """Each request reserves before its (simulated) engine call and settles after it."""
    limiter = RateLimiter()
    limit = [("key:a", Limit(tokens_per_min=10_000, concurrent=200))]
    admitted: list[int] = []
    refused = 0

    async def request(i: int) -> None:
        nonlocal refused
        try:
            held = limiter.reserve(limit, 100, now=1.0)
        except RateLimited:
            refused += 1
            return
        admitted.append(i)
        await asyncio.sleep(0.001 * (i % 7))  # the engine works
        limiter.settle(held, 100, now=1.5)

    await asyncio.gather(*(request(i) for i in range(500)))
    assert len(admitted) == 100  # 10,000 tokens / 100 each: exactly, never more
    assert refused == 400
    assert limiter.usage("key:a", 2.0) == (100, 10_000, 0)
