"""The gateway's admission wrapper: the flow queue driven by asyncio and the pool's counts."""

from __future__ import annotations

import asyncio

import pytest

from pilothouse.clock import ManualClock, SystemClock
from pilothouse.config.fleet import FlowControlSpec, SaturationSpec
from pilothouse.endpoints.pool import EndpointPool
from pilothouse.errors import RequestShed
from pilothouse.gateway.admission import Admission
from pilothouse.scheduling.types import Endpoint, SchedulingRequest

REPLICA = Endpoint(name="r0", address="127.0.0.1:1", model="m")


def _spec(**changes: object) -> FlowControlSpec:
    base: dict[str, object] = {
        "enabled": True,
        "max_queue": 3,
        "queue_timeout_s": 10.0,
        "retry_after_s": 2.0,
        "saturation": SaturationSpec(max_in_flight_per_replica=1),
    }
    return FlowControlSpec.model_validate({**base, **changes})


def _setup(
    spec: FlowControlSpec, clock: ManualClock | SystemClock | None = None, busy: bool = True
) -> tuple[EndpointPool, Admission]:
    pool = EndpointPool()
    pool.add(REPLICA, ready=True)
    if busy:
        pool.acquire("r0", 0)
    return pool, Admission(spec, pool, clock or ManualClock(), recheck_s=60.0)


def _req(key: str, priority: int = 0, tenant: str | None = None) -> SchedulingRequest:
    return SchedulingRequest(request_id=key, model="m", priority=priority, tenant=tenant)


async def _admitted(admission: Admission, pool: EndpointPool, key: str, **kw: object) -> str:
    """Admit, then count the request in flight as the router would."""
    await admission.admit(_req(key, **kw))  # type: ignore[arg-type]
    pool.acquire("r0", 0)
    return key


def _finish(pool: EndpointPool, admission: Admission) -> None:
    pool.release("r0", None)
    admission.wake(pool.get("r0"))


async def test_disabled_admits_even_when_saturated() -> None:
    _pool, admission = _setup(_spec(enabled=False))
    await asyncio.wait_for(admission.admit(_req("a")), 1)
    assert admission.queued("m") == 0


async def test_room_admits_at_once() -> None:
    _pool, admission = _setup(_spec(), busy=False)
    await asyncio.wait_for(admission.admit(_req("a")), 1)
    assert admission.queued("m") == 0


async def test_no_ready_replica_is_left_to_the_scheduler() -> None:
    pool, admission = _setup(_spec())
    pool.set_ready("r0", False)
    await asyncio.wait_for(admission.admit(_req("a")), 1)


async def test_queued_requests_go_one_per_freed_slot_in_priority_order() -> None:
    pool, admission = _setup(_spec())
    done: list[str] = []
    tasks = [
        asyncio.create_task(_admitted(admission, pool, key, priority=p))
        for key, p in (("low", 0), ("high", 9), ("mid", 5))
    ]
    for task in tasks:
        task.add_done_callback(lambda t: done.append(t.result()))
    await asyncio.sleep(0)
    assert admission.queued("m") == 3
    for expected in (["high"], ["high", "mid"], ["high", "mid", "low"]):
        _finish(pool, admission)
        await asyncio.sleep(0.01)
        assert done == expected  # one slot, one request: never two
    await asyncio.gather(*tasks)


async def test_tenants_take_turns() -> None:
    pool, admission = _setup(_spec(max_queue=10))
    order: list[str] = []

    async def one(key: str, tenant: str) -> None:
        order.append(await _admitted(admission, pool, key, tenant=tenant))

    keys = [("n1", "noisy"), ("n2", "noisy"), ("n3", "noisy"), ("q1", "quiet")]
    tasks = [asyncio.create_task(one(k, t)) for k, t in keys]
    await asyncio.sleep(0)
    for _ in keys:
        _finish(pool, admission)
        await asyncio.sleep(0.01)
    await asyncio.gather(*tasks)
    assert order == ["n1", "q1", "n2", "n3"]


async def test_a_full_queue_sheds_the_lowest_priority_with_retry_after() -> None:
    _pool, admission = _setup(_spec(max_queue=2))
    low = asyncio.create_task(admission.admit(_req("low", 0)))
    mid = asyncio.create_task(admission.admit(_req("mid", 5)))
    await asyncio.sleep(0)
    high = asyncio.create_task(admission.admit(_req("high", 9)))
    await asyncio.sleep(0)
    with pytest.raises(RequestShed, match="higher-priority") as info:
        await low
    assert info.value.retry_after == 2.0
    with pytest.raises(RequestShed, match="queue is full"):
        await admission.admit(_req("lowest", -1))
    assert admission.queued("m") == 2
    for task in (mid, high):
        task.cancel()
    await asyncio.gather(mid, high, return_exceptions=True)
    assert admission.queued("m") == 0


async def test_waiting_past_the_timeout_is_shed() -> None:
    clock = ManualClock()
    pool, admission = _setup(_spec(queue_timeout_s=5.0), clock)
    waiter = asyncio.create_task(admission.admit(_req("a")))
    await asyncio.sleep(0)
    clock.advance(4.0)
    admission.wake(pool.get("r0"))  # still saturated, not yet timed out
    await asyncio.sleep(0)
    assert not waiter.done()
    clock.advance(1.0)
    admission.wake(pool.get("r0"))
    with pytest.raises(RequestShed, match="queue timeout"):
        await waiter


async def test_the_timer_sheds_without_any_request_finishing() -> None:
    _pool, admission = _setup(_spec(queue_timeout_s=0.05), SystemClock())
    with pytest.raises(RequestShed, match="queue timeout"):
        await asyncio.wait_for(admission.admit(_req("a")), 2)


async def test_the_timer_admits_when_capacity_frees_without_a_finish() -> None:
    pool = EndpointPool()
    pool.add(REPLICA, ready=False)  # unavailable: admit passes through...
    pool.add(Endpoint(name="r1", address="127.0.0.1:2", model="m"), ready=True)
    pool.acquire("r1", 0)  # ...and the only ready replica is full
    admission = Admission(_spec(), pool, SystemClock(), recheck_s=0.02)
    waiter = asyncio.create_task(admission.admit(_req("a")))
    await asyncio.sleep(0.05)
    assert not waiter.done()
    pool.set_ready("r0", True)  # a replica recovers: nothing finished, the timer notices
    await asyncio.wait_for(waiter, 1)


async def test_a_client_that_goes_away_leaves_the_queue() -> None:
    _pool, admission = _setup(_spec())
    waiter = asyncio.create_task(admission.admit(_req("a")))
    await asyncio.sleep(0)
    assert admission.queued("m") == 1
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert admission.queued("m") == 0


async def test_a_slot_granted_to_a_cancelled_request_goes_to_the_next() -> None:
    pool, admission = _setup(_spec())
    first = asyncio.create_task(admission.admit(_req("first", 5)))
    second = asyncio.create_task(_admitted(admission, pool, "second", priority=1))
    await asyncio.sleep(0)
    _finish(pool, admission)  # grants "first"...
    first.cancel()  # ...which goes away before it starts
    with pytest.raises(asyncio.CancelledError):
        await first
    assert await asyncio.wait_for(second, 1) == "second"
