"""Request holding: scale from zero without dropping a request.

When a request names a model that the executor can start replicas of (``pilothouse up``
attaches it) and that model has no ready replica — scaled to zero, or its only replica is
starting or being restarted — the proxy awaits :meth:`Holding.wait_for_replica` before
flow control and scheduling:

- the request waits in its model's bounded queue (``gateway.hold.max_queue``; the queue is
  the flow-control :class:`~pilothouse.scheduling.flow.FlowQueue`: priority, then tenant
  round-robin, lowest priority dropped first when full);
- the executor is told at once (``on_demand``), so the autoscaler starts a replica;
- every held request of the model is released as soon as one of its replicas is ready
  (checked every ``recheck_s``), and then goes through flow control and the scheduler as
  any other request;
- one that waits longer than ``gateway.hold.timeout_s``, or finds the queue full, gets
  :class:`~pilothouse.errors.NoEndpointAvailable`: a 503 whose OpenAI error body says why.

Models the gateway cannot start (static ``endpoints``, or no executor) are never held:
without a ready replica they get 503 at once, as before.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from itertools import count

from pilothouse.clock import Clock
from pilothouse.config.fleet import HoldSpec
from pilothouse.endpoints.pool import EndpointPool
from pilothouse.errors import NoEndpointAvailable
from pilothouse.scheduling.flow import QUEUE_FULL, FlowQueue, Shed
from pilothouse.scheduling.types import SchedulingRequest

Demand = Callable[[str], None]


class Holding:
    """Per-model queues of requests waiting for a first ready replica."""

    def __init__(
        self, spec: HoldSpec, pool: EndpointPool, clock: Clock, recheck_s: float = 0.05
    ) -> None:
        self._spec = spec
        self._pool = pool
        self._clock = clock
        self._recheck = recheck_s
        self._models: frozenset[str] = frozenset()
        self._on_demand: Demand | None = None
        self._queues: dict[str, FlowQueue] = {}
        self._waiters: dict[str, asyncio.Future[None]] = {}
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._tickets = count()

    def attach(self, models: Iterable[str], on_demand: Demand) -> None:
        """Hold requests for ``models``; call ``on_demand(model)`` when one is held."""
        self._models = frozenset(models)
        self._on_demand = on_demand

    def set_models(self, models: Iterable[str]) -> None:
        """The models the executor can start (after a spec change)."""
        self._models = frozenset(models)

    def models(self) -> frozenset[str]:
        return self._models

    def holds(self, model: str) -> bool:
        return self._on_demand is not None and model in self._models

    def held(self, model: str) -> int:
        queue = self._queues.get(model)
        return len(queue) if queue is not None else 0

    async def wait_for_replica(self, request: SchedulingRequest) -> None:
        """Return once ``request.model`` has a ready replica (at once if it has one)."""
        model = request.model
        if not self.holds(model) or self._pool.candidates(model):
            return
        queue = self._queue(model)
        key = str(next(self._tickets))
        shed = queue.enqueue(
            key, tenant=request.tenant or "", priority=request.priority, now=self._clock.now()
        )
        self._shed(model, shed)
        if key not in queue:
            raise self._error(model, shed[0])
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters[key] = future
        assert self._on_demand is not None
        self._on_demand(model)
        self._arm(model)
        try:
            await future
        except asyncio.CancelledError:  # the client went away while held
            self._waiters.pop(key, None)
            queue.remove(key)
            raise

    # -- internals -----------------------------------------------------------------------

    def _queue(self, model: str) -> FlowQueue:
        queue = self._queues.get(model)
        if queue is None:
            queue = self._queues[model] = FlowQueue(self._spec.max_queue, self._spec.timeout_s)
        return queue

    def _check(self, model: str) -> None:
        queue = self._queues[model]
        self._shed(model, queue.expire(self._clock.now()))
        if not self._pool.candidates(model):
            return
        while (item := queue.dequeue()) is not None:
            future = self._waiters.pop(item.key, None)
            if future is not None and not future.done():
                future.set_result(None)

    def _shed(self, model: str, shed: list[Shed]) -> None:
        for dropped in shed:
            future = self._waiters.pop(dropped.item.key, None)
            if future is not None and not future.done():
                future.set_exception(self._error(model, dropped))

    def _error(self, model: str, shed: Shed) -> NoEndpointAvailable:
        if shed.reason == QUEUE_FULL:
            why = f"{self._spec.max_queue} requests are already held for it"
        else:
            why = f"none became ready within {self._spec.timeout_s:g} s"
        return NoEndpointAvailable(
            f"model '{model}' has no ready replica and one is starting, but {why}; "
            "retry in a moment"
        )

    def _arm(self, model: str) -> None:
        if model not in self._timers:
            loop = asyncio.get_running_loop()
            self._timers[model] = loop.call_later(self._recheck, self._tick, model)

    def _tick(self, model: str) -> None:
        del self._timers[model]
        self._check(model)
        if self._queues[model]:
            self._arm(model)
