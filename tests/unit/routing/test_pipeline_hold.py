"""Holding while a model has no ready replica (scale from zero), on a virtual clock."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest

from pilothouse.clock import ManualClock
from pilothouse.config.fleet import HoldSpec
from pilothouse.endpoints.pool import EndpointPool
from pilothouse.errors import NoEndpointAvailable
from pilothouse.routing import HOLD, Route, RoutingPipeline, Wait

from .conftest import REPLICA, pipeline, req, run


def _holding(
    clock: ManualClock, max_queue: int = 8, timeout_s: float = 5.0
) -> tuple[RoutingPipeline, EndpointPool, list[str]]:
    pool = EndpointPool()
    demanded: list[str] = []
    p = pipeline(pool, clock, hold=HoldSpec(max_queue=max_queue, timeout_s=timeout_s))
    p.hold_for(["m"], demanded.append)
    return p, pool, demanded


async def test_held_requests_are_released_when_a_replica_is_ready(clock: ManualClock) -> None:
    p, pool, demanded = _holding(clock)
    waiters = [asyncio.create_task(run(p, p.open(req(str(i))))) for i in range(5)]
    await asyncio.sleep(0)
    assert p.held("m") == 5
    assert demanded == ["m"] * 5
    pool.add(REPLICA, ready=False)
    p.waiting.poll()
    await asyncio.sleep(0)
    assert not any(w.done() for w in waiters)  # starting is not ready
    pool.set_ready("r0", True)
    p.waiting.poll()
    assert sorted(await asyncio.gather(*waiters)) == ["0", "1", "2", "3", "4"]
    assert p.held("m") == 0
    assert pool.get("r0").in_flight == 5


def test_a_model_with_a_ready_replica_or_not_launched_is_not_held(clock: ManualClock) -> None:
    p, pool, demanded = _holding(clock)
    pool.add(REPLICA, ready=True)
    assert isinstance(p.decide(p.open(req("1"))), Route)
    static = p.open(replace(req("2"), model="static"))
    with pytest.raises(NoEndpointAvailable):
        p.decide(static)
    assert demanded == []
    assert not pipeline(pool, clock).holds("m")  # no executor attached


def test_the_decision_says_hold(clock: ManualClock) -> None:
    p, _, demanded = _holding(clock)
    assert p.decide(p.open(req("1"))) == Wait(HOLD, "m")
    assert demanded == ["m"]


async def test_timeout_and_full_queue_give_a_clear_503(clock: ManualClock) -> None:
    p, _, _ = _holding(clock, max_queue=2, timeout_s=5.0)
    first = asyncio.create_task(run(p, p.open(req("1"))))
    second = asyncio.create_task(run(p, p.open(req("2"))))
    await asyncio.sleep(0)
    with pytest.raises(NoEndpointAvailable, match="2 requests are already held"):
        await run(p, p.open(req("3")))
    clock.advance(4.9)
    p.waiting.poll()
    await asyncio.sleep(0)
    assert not first.done()
    clock.advance(0.1)
    p.waiting.poll()
    for waiter in (first, second):
        with pytest.raises(NoEndpointAvailable, match=r"none became ready within 5 s"):
            await waiter
    assert p.held("m") == 0


async def test_a_higher_priority_request_displaces_a_lower_one_when_full(
    clock: ManualClock,
) -> None:
    p, _, _ = _holding(clock, max_queue=1)
    low = asyncio.create_task(run(p, p.open(req("1", priority=0))))
    await asyncio.sleep(0)
    high = asyncio.create_task(run(p, p.open(req("2", priority=5))))
    with pytest.raises(NoEndpointAvailable):
        await low
    assert not high.done()
    high.cancel()
    await asyncio.gather(high, return_exceptions=True)


async def test_a_client_that_leaves_frees_its_place(clock: ManualClock) -> None:
    p, _, _ = _holding(clock)
    ticket = p.open(req("1"))
    waiter = asyncio.create_task(run(p, ticket))
    await asyncio.sleep(0)
    assert p.held("m") == 1
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert p.held("m") == 0
    assert ticket.waiting is None
