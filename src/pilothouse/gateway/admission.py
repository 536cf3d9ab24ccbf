"""Flow control in the gateway: hold requests while every replica is saturated.

A thin asyncio wrapper around the pure policy (:mod:`pilothouse.scheduling.flow`). The
proxy awaits :meth:`Admission.admit` before it asks the router for a replica:

- flow control off, no ready replica (the scheduler answers 503), or room in the pool
  and nobody waiting: it returns at once;
- otherwise the request waits in its model's :class:`FlowQueue`. It is dispatched when a
  request of that model finishes (the router's ``on_finished`` calls :meth:`wake`) or on a
  timer (every ``recheck_s``, and at the next queue deadline), in priority, then
  tenant round-robin, order, as long as the pool has headroom;
- a request shed by the queue (full, displaced by a higher priority, or past
  ``queue_timeout_s``) gets :class:`RequestShed`: 429 with ``retry-after``.

A dispatched request counts as *granted* until its coroutine resumes and the router
counts it in flight (nothing awaits in between), so one freed slot never admits two.
"""

from __future__ import annotations

import asyncio
from itertools import count

from pilothouse.clock import Clock
from pilothouse.config.fleet import FlowControlSpec
from pilothouse.endpoints.pool import EndpointPool
from pilothouse.errors import RequestShed
from pilothouse.scheduling.flow import (
    EVICTED,
    QUEUE_FULL,
    FlowQueue,
    SaturationLimits,
    Shed,
    headroom,
)
from pilothouse.scheduling.types import Endpoint, SchedulingRequest

_REASONS = {
    QUEUE_FULL: "every replica is saturated and the queue is full",
    EVICTED: "every replica is saturated; a higher-priority request took its place in the queue",
}
_TIMED_OUT = "every replica stayed saturated for the whole queue timeout"


class Admission:
    """Per-model flow-control queues of one gateway."""

    def __init__(
        self, spec: FlowControlSpec, pool: EndpointPool, clock: Clock, recheck_s: float = 0.5
    ) -> None:
        saturation = spec.saturation
        self._spec = spec
        self._limits = SaturationLimits(
            saturation.max_in_flight_per_replica,
            saturation.max_waiting,
            saturation.max_kv_cache_usage,
        )
        self._pool = pool
        self._clock = clock
        self._recheck = recheck_s
        self._queues: dict[str, FlowQueue] = {}
        self._waiters: dict[str, asyncio.Future[None]] = {}
        self._granted: dict[str, int] = {}
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._tickets = count()

    def queued(self, model: str) -> int:
        """Requests of ``model`` waiting now."""
        queue = self._queues.get(model)
        return len(queue) if queue is not None else 0

    async def admit(self, request: SchedulingRequest) -> None:
        """Return when ``request`` may be scheduled; raise :class:`RequestShed` if shed."""
        if not self._spec.enabled:
            return
        model = request.model
        queue = self._queue(model)
        room = self._room(model)
        if room is None or (room > 0 and not queue):
            return
        key = str(next(self._tickets))
        now = self._clock.now()
        tenant, priority = request.tenant or "", request.priority
        shed = queue.enqueue(key, tenant=tenant, priority=priority, now=now)
        self._shed(shed)
        if key not in queue:
            raise self._error(shed[0])
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters[key] = future
        self._dispatch(model)
        if not future.done():
            self._arm(model)
        try:
            await future
        except asyncio.CancelledError:
            self._abandon(model, key, future)
            raise
        self._granted[model] -= 1

    def wake(self, endpoint: Endpoint) -> None:
        """A request on ``endpoint`` finished: dispatch what now fits (``Router.finished``)."""
        if endpoint.model in self._queues:
            self._dispatch(endpoint.model)

    # -- internals -----------------------------------------------------------------------

    def _queue(self, model: str) -> FlowQueue:
        queue = self._queues.get(model)
        if queue is None:
            spec = self._spec
            queue = self._queues[model] = FlowQueue(spec.max_queue, spec.queue_timeout_s)
            self._granted[model] = 0
        return queue

    def _room(self, model: str) -> int | None:
        """Headroom left for ``model`` (``None``: no ready replica, let the scheduler say)."""
        endpoints = self._pool.candidates(model)
        if not endpoints:
            return None
        return headroom(endpoints, self._limits) - self._granted[model]

    def _dispatch(self, model: str) -> None:
        queue = self._queues[model]
        self._shed(queue.expire(self._clock.now()))
        while queue:
            room = self._room(model)
            if room is not None and room <= 0:
                return
            item = queue.dequeue()
            assert item is not None  # the queue is not empty
            future = self._waiters.pop(item.key, None)
            if future is not None and not future.done():
                self._granted[model] += 1
                future.set_result(None)

    def _shed(self, shed: list[Shed]) -> None:
        for dropped in shed:
            future = self._waiters.pop(dropped.item.key, None)
            if future is not None and not future.done():
                future.set_exception(self._error(dropped))

    def _error(self, shed: Shed) -> RequestShed:
        reason = _REASONS.get(shed.reason, _TIMED_OUT)
        return RequestShed(f"request shed by flow control: {reason}", self._spec.retry_after_s)

    def _abandon(self, model: str, key: str, future: asyncio.Future[None]) -> None:
        """The client went away while queued, or just after its dispatch."""
        if not future.done() or future.cancelled():
            self._waiters.pop(key, None)
            self._queues[model].remove(key)
        elif future.exception() is None:  # dispatched, but it will not start: free the slot
            self._granted[model] -= 1
            self._dispatch(model)

    def _arm(self, model: str) -> None:
        """Re-check ``model``'s queue at its next deadline, or within ``recheck_s``."""
        if model in self._timers:
            return
        deadline = self._queues[model].next_deadline()
        delay = self._recheck
        if deadline is not None:
            delay = min(delay, max(0.0, deadline - self._clock.now()))
        loop = asyncio.get_running_loop()
        self._timers[model] = loop.call_later(delay, self._tick, model)

    def _tick(self, model: str) -> None:
        del self._timers[model]
        self._dispatch(model)
        if self._queues[model]:
            self._arm(model)
