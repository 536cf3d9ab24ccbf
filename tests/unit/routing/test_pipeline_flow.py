"""Flow control in the pipeline: queue while saturated, one release per freed slot."""

from __future__ import annotations

import asyncio

import pytest

from pilothouse.clock import ManualClock
from pilothouse.endpoints.pool import EndpointPool
from pilothouse.errors import RequestShed
from pilothouse.routing import QUEUE, Route, RoutingPipeline, Wait

from .conftest import REPLICA, flow, pipeline, req, run


def _setup(
    clock: ManualClock, busy: bool = True, **changes: object
) -> tuple[EndpointPool, RoutingPipeline]:
    pool = EndpointPool()
    pool.add(REPLICA, ready=True)
    if busy:
        pool.acquire("r0", 0)
    return pool, pipeline(pool, clock, flow_spec=flow(**changes))


def _finish(pool: EndpointPool, p: RoutingPipeline) -> None:
    """The request that kept ``r0`` busy ends (a ticket outside these tests)."""
    pool.release("r0", None)
    p.waiting.wake(QUEUE, "m")


def _end(p: RoutingPipeline, tickets: dict[str, object], key: str) -> None:
    p.finished(tickets[key])  # type: ignore[arg-type]


def test_disabled_routes_even_when_saturated(clock: ManualClock) -> None:
    _, p = _setup(clock, enabled=False)
    assert isinstance(p.decide(p.open(req("a"))), Route)


def test_room_routes_at_once_and_saturation_queues(clock: ManualClock) -> None:
    _, free = _setup(clock, busy=False)
    assert isinstance(free.decide(free.open(req("a"))), Route)
    _, busy = _setup(clock)
    assert busy.decide(busy.open(req("b"))) == Wait(QUEUE, "m")


async def test_queued_requests_go_one_per_freed_slot_in_priority_order(
    clock: ManualClock,
) -> None:
    pool, p = _setup(clock)
    tickets = {
        key: p.open(req(key, priority=pr)) for key, pr in (("low", 0), ("high", 9), ("mid", 5))
    }
    done: list[str] = []
    tasks = [asyncio.create_task(run(p, t)) for t in tickets.values()]
    for task in tasks:
        task.add_done_callback(lambda t: done.append(t.result()))
    await asyncio.sleep(0)
    assert p.queued("m") == 3
    _finish(pool, p)
    for expected in (["high"], ["high", "mid"], ["high", "mid", "low"]):
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        assert done == expected  # one slot, one request: never two
        _end(p, tickets, expected[-1])
    await asyncio.gather(*tasks)
    assert pool.get("r0").in_flight == 0


async def test_tenants_take_turns(clock: ManualClock) -> None:
    pool, p = _setup(clock, max_queue=10)
    keys = [("n1", "noisy"), ("n2", "noisy"), ("n3", "noisy"), ("q1", "quiet")]
    tickets = {k: p.open(req(k, tenant=t)) for k, t in keys}
    order: list[str] = []
    tasks = [asyncio.create_task(run(p, t)) for t in tickets.values()]
    for task in tasks:
        task.add_done_callback(lambda t: order.append(t.result()))
    await asyncio.sleep(0)
    _finish(pool, p)
    for _ in keys:
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        _end(p, tickets, order[-1])
    await asyncio.gather(*tasks)
    assert order == ["n1", "q1", "n2", "n3"]


async def test_a_full_queue_sheds_the_lowest_priority_with_retry_after(
    clock: ManualClock,
) -> None:
    _, p = _setup(clock, max_queue=2)
    low = asyncio.create_task(run(p, p.open(req("low", 0))))
    mid = asyncio.create_task(run(p, p.open(req("mid", 5))))
    await asyncio.sleep(0)
    high = asyncio.create_task(run(p, p.open(req("high", 9))))
    await asyncio.sleep(0)
    with pytest.raises(RequestShed, match="higher-priority") as info:
        await low
    assert info.value.retry_after == 2.0
    with pytest.raises(RequestShed, match="queue is full"):
        await run(p, p.open(req("lowest", -1)))
    assert p.queued("m") == 2
    for task in (mid, high):
        task.cancel()
    await asyncio.gather(mid, high, return_exceptions=True)
    assert p.queued("m") == 0


async def test_waiting_past_the_timeout_is_shed_on_the_virtual_clock(clock: ManualClock) -> None:
    _, p = _setup(clock, queue_timeout_s=5.0)
    waiter = asyncio.create_task(run(p, p.open(req("a"))))
    await asyncio.sleep(0)
    clock.advance(4.0)
    p.waiting.poll()  # still saturated, not yet timed out
    await asyncio.sleep(0)
    assert not waiter.done()
    clock.advance(1.0)
    p.waiting.poll()
    with pytest.raises(RequestShed, match="queue timeout"):
        await waiter


async def test_a_poll_releases_when_capacity_frees_without_a_finish(clock: ManualClock) -> None:
    pool = EndpointPool()
    pool.add(REPLICA, ready=False)
    pool.add(REPLICA.evolve(name="r1", address="127.0.0.1:2"), ready=True)
    pool.acquire("r1", 0)  # the only ready replica is full
    p = pipeline(pool, clock, flow_spec=flow())
    waiter = asyncio.create_task(run(p, p.open(req("a"))))
    await asyncio.sleep(0)
    assert not waiter.done()
    pool.set_ready("r0", True)  # a replica recovers: nothing finished, the poll notices
    p.waiting.poll()
    assert await waiter == "a"


async def test_the_timer_polls_on_the_running_loop() -> None:
    from pilothouse.clock import SystemClock

    pool = EndpointPool()
    pool.add(REPLICA, ready=True)
    pool.acquire("r0", 0)
    p = pipeline(pool, SystemClock(), flow_spec=flow(queue_timeout_s=0.05))  # type: ignore[arg-type]
    with pytest.raises(RequestShed, match="queue timeout"):
        await asyncio.wait_for(run(p, p.open(req("a"))), 5)


async def test_a_client_that_goes_away_leaves_the_queue(clock: ManualClock) -> None:
    _, p = _setup(clock)
    waiter = asyncio.create_task(run(p, p.open(req("a"))))
    await asyncio.sleep(0)
    assert p.queued("m") == 1
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert p.queued("m") == 0


async def test_a_slot_granted_to_a_request_that_left_goes_to_the_next(clock: ManualClock) -> None:
    pool, p = _setup(clock)
    first = asyncio.create_task(run(p, p.open(req("first", 5))))
    second = asyncio.create_task(run(p, p.open(req("second", 1))))
    await asyncio.sleep(0)
    _finish(pool, p)  # grants "first"...
    first.cancel()  # ...which goes away before it starts
    with pytest.raises(asyncio.CancelledError):
        await first
    assert await second == "second"
    assert pool.get("r0").in_flight == 1
