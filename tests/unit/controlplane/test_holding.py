"""Request holding while a model has no ready replica (scale from zero)."""

from __future__ import annotations

import asyncio

import pytest

from pilothouse.clock import SystemClock
from pilothouse.config.fleet import HoldSpec
from pilothouse.endpoints.pool import EndpointPool
from pilothouse.errors import NoEndpointAvailable
from pilothouse.gateway.holding import Holding
from pilothouse.scheduling.types import Endpoint, SchedulingRequest


def request(i: int, model: str = "m", priority: int = 0) -> SchedulingRequest:
    return SchedulingRequest(request_id=f"r{i}", model=model, prompt="p", priority=priority)


def holding(max_queue: int = 8, timeout_s: float = 5.0) -> tuple[Holding, EndpointPool, list[str]]:
    pool = EndpointPool()
    demanded: list[str] = []
    hold = Holding(HoldSpec(max_queue=max_queue, timeout_s=timeout_s), pool, SystemClock(), 0.01)
    hold.attach(["m"], demanded.append)
    return hold, pool, demanded


async def test_held_requests_are_released_when_a_replica_is_ready() -> None:
    hold, pool, demanded = holding()
    waiters = [asyncio.create_task(hold.wait_for_replica(request(i))) for i in range(5)]
    await asyncio.sleep(0.05)
    assert not any(w.done() for w in waiters)
    assert hold.held("m") == 5
    assert demanded == ["m"] * 5
    pool.add(Endpoint(name="m-0", address="127.0.0.1:1", model="m"), ready=False)
    await asyncio.sleep(0.05)
    assert not any(w.done() for w in waiters)  # starting is not ready
    pool.set_ready("m-0", True)
    await asyncio.wait_for(asyncio.gather(*waiters), 1)
    assert hold.held("m") == 0


async def test_a_model_with_a_ready_replica_or_not_launched_is_not_held() -> None:
    hold, pool, demanded = holding()
    pool.add(Endpoint(name="m-0", address="127.0.0.1:1", model="m"), ready=True)
    await asyncio.wait_for(hold.wait_for_replica(request(1)), 0.1)
    await asyncio.wait_for(hold.wait_for_replica(request(2, model="static")), 0.1)
    assert demanded == []
    assert not Holding(HoldSpec(), pool, SystemClock()).holds("m")  # no executor attached


async def test_timeout_and_full_queue_give_a_clear_503() -> None:
    hold, _, _ = holding(max_queue=2, timeout_s=0.1)
    first = asyncio.create_task(hold.wait_for_replica(request(1)))
    second = asyncio.create_task(hold.wait_for_replica(request(2)))
    await asyncio.sleep(0)
    with pytest.raises(NoEndpointAvailable, match="2 requests are already held"):
        await hold.wait_for_replica(request(3))
    for waiter in (first, second):
        with pytest.raises(NoEndpointAvailable, match=r"none became ready within 0\.1 s"):
            await asyncio.wait_for(waiter, 1)
    assert hold.held("m") == 0


async def test_a_higher_priority_request_displaces_a_lower_one_when_full() -> None:
    hold, _, _ = holding(max_queue=1)
    low = asyncio.create_task(hold.wait_for_replica(request(1, priority=0)))
    await asyncio.sleep(0)
    high = asyncio.create_task(hold.wait_for_replica(request(2, priority=5)))
    with pytest.raises(NoEndpointAvailable):
        await asyncio.wait_for(low, 1)
    assert not high.done()
    high.cancel()


async def test_a_client_that_leaves_frees_its_place() -> None:
    hold, _, _ = holding()
    waiter = asyncio.create_task(hold.wait_for_replica(request(1)))
    await asyncio.sleep(0.02)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert hold.held("m") == 0
