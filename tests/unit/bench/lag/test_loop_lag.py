"""The event-loop lag probe: overshoot arithmetic with an injected clock, and a real loop."""

from __future__ import annotations

import asyncio

import pytest

from pilothouse.bench.lag.loop import LagStats, LoopLagProbe, lag_under_load


def test_lag_stats_in_milliseconds() -> None:
    stats = LagStats.of([0.001 * i for i in range(101)])  # 0..100 ms
    assert stats.samples == 101
    assert stats.p50_ms == pytest.approx(50.0)
    assert stats.p99_ms == pytest.approx(99.0)
    assert stats.max_ms == pytest.approx(100.0)
    assert LagStats.of([]) == LagStats(0, 0.0, 0.0, 0.0)


async def test_the_probe_records_the_overshoot_of_each_sleep() -> None:
    # each sleep of 1 ms is seen to last 1, 3 then 11 ms: lags 0, 2 and 10 ms
    readings = iter([0.0, 0.001, 1.0, 1.003, 2.0, 2.011])
    probe = LoopLagProbe(0.001, now=lambda: next(readings, 99.0))
    async with probe:
        for _ in range(1000):  # the probe samples while this coroutine sleeps
            await asyncio.sleep(0.001)
            if len(probe.lags_s) >= 3:
                break
    assert probe.lags_s[:3] == pytest.approx([0.0, 0.002, 0.010])


async def test_a_blocking_step_shows_as_lag_and_a_yielding_one_as_less() -> None:
    def block(seconds: float) -> None:
        import time

        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            pass

    async def blocking(_: int) -> None:
        block(0.05)
        await asyncio.sleep(0)

    async def yielding(_: int) -> None:
        await asyncio.to_thread(lambda: None)

    blocked = await lag_under_load(blocking, requests=3, concurrency=2)
    free = await lag_under_load(yielding, requests=5, concurrency=2)
    assert blocked.samples >= 1
    # a comparison, not a threshold: 50 ms busy loops must delay a timer more than thread hops do
    assert blocked.max_ms > free.max_ms
