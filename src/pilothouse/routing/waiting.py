"""The one waiting primitive: requests that the pipeline told to wait, and their release.

Two reasons to wait share it (:class:`~pilothouse.routing.decision.Wait`):

- ``hold``: the model has no ready replica but one is starting (scale from zero); every
  held request of a model is released as soon as one of its replicas is ready;
- ``queue``: every replica is saturated (flow control); requests are released one per
  free slot, as requests of that model finish.

Each (reason, model) has a bounded :class:`~pilothouse.scheduling.flow.FlowQueue`:
priority first, then tenants in turn, lowest priority shed first when full, and a deadline
per request. A policy per reason says how many may be released now (``room``), what a
release grants (``grant``), and which error a shed request gets.

Time is the injected clock's: deadlines are ``clock.now() + timeout``, and the queues are
re-checked by :meth:`Waiting.poll`, which a timer on the running loop calls at the next
deadline or every ``recheck_s`` (tests on a virtual clock advance it and call ``poll``).
A waiter whose task is cancelled (its client went away) leaves its queue at once; one
cancelled just after its release gives its grant back.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from itertools import count

from pilothouse.clock import Clock
from pilothouse.errors import PilothouseError
from pilothouse.routing.decision import Ticket, WaitKind
from pilothouse.scheduling.flow import FlowQueue, Shed


@dataclass(frozen=True, slots=True)
class WaitPolicy:
    """How one kind of wait behaves."""

    max_queue: int
    timeout_s: float
    room: Callable[[str], int]
    """How many requests of a model may be released now (0: none yet)."""
    grant: Callable[[Ticket], None]
    """Called for each released request, before its waiter resumes."""
    ungrant: Callable[[Ticket], None]
    """A released request whose client left before it resumed: undo ``grant``."""
    error: Callable[[str, Shed], PilothouseError]
    """The error a shed request of a model gets."""


class Waiting:
    """Per-(kind, model) wait queues (see the module docstring)."""

    def __init__(
        self, clock: Clock, policies: Mapping[WaitKind, WaitPolicy], recheck_s: float = 0.05
    ) -> None:
        self._clock = clock
        self._policies = dict(policies)
        self._recheck = recheck_s
        self._queues: dict[tuple[WaitKind, str], FlowQueue] = {}
        self._waiters: dict[str, tuple[Ticket, asyncio.Future[None]]] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._keys = count()

    def queued(self, kind: WaitKind, model: str) -> int:
        queue = self._queues.get((kind, model))
        return len(queue) if queue is not None else 0

    def waiting(self, kind: WaitKind, model: str) -> bool:
        return self.queued(kind, model) > 0

    async def wait(self, ticket: Ticket, kind: WaitKind, model: str) -> None:
        """Until ``ticket`` is released; raises the policy's error if it is shed."""
        queue = self._queue(kind, model)
        key = str(next(self._keys))
        request = ticket.request
        now = self._clock.now()
        shed = queue.enqueue(key, tenant=request.tenant or "", priority=request.priority, now=now)
        self._shed(kind, model, shed)
        if key not in queue:
            raise self._policies[kind].error(model, shed[0])
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters[key] = (ticket, future)
        ticket.waiting = key
        self._dispatch(kind, model)
        if not future.done():
            self._arm()
        try:
            await future
        except asyncio.CancelledError:
            self._abandon(kind, model, key, ticket, future)
            raise
        finally:
            ticket.waiting = None

    def wake(self, kind: WaitKind, model: str) -> None:
        """Release what fits now (a request of ``model`` finished, a replica came up)."""
        if (kind, model) in self._queues:
            self._dispatch(kind, model)

    def poll(self) -> None:
        """Shed what is past its deadline and release what fits, in every queue."""
        for kind, model in list(self._queues):
            self._dispatch(kind, model)

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    # -- internals -----------------------------------------------------------------------

    def _queue(self, kind: WaitKind, model: str) -> FlowQueue:
        queue = self._queues.get((kind, model))
        if queue is None:
            policy = self._policies[kind]
            queue = self._queues[(kind, model)] = FlowQueue(policy.max_queue, policy.timeout_s)
        return queue

    def _dispatch(self, kind: WaitKind, model: str) -> None:
        queue = self._queues[(kind, model)]
        policy = self._policies[kind]
        self._shed(kind, model, queue.expire(self._clock.now()))
        while queue and policy.room(model) > 0:
            item = queue.dequeue()
            assert item is not None  # the queue is not empty
            ticket, future = self._waiters.pop(item.key, (None, None))
            if ticket is not None and future is not None and not future.done():
                policy.grant(ticket)
                future.set_result(None)

    def _shed(self, kind: WaitKind, model: str, shed: list[Shed]) -> None:
        for dropped in shed:
            _, future = self._waiters.pop(dropped.item.key, (None, None))
            if future is not None and not future.done():
                future.set_exception(self._policies[kind].error(model, dropped))

    def _abandon(
        self, kind: WaitKind, model: str, key: str, ticket: Ticket, future: asyncio.Future[None]
    ) -> None:
        if not future.done() or future.cancelled():
            self._waiters.pop(key, None)
            self._queues[(kind, model)].remove(key)
        elif future.exception() is None:  # released, but it will not run: free its grant
            self._policies[kind].ungrant(ticket)
            self._dispatch(kind, model)

    def _arm(self) -> None:
        """Poll again at the next deadline, or within ``recheck_s``."""
        if self._timer is not None:
            return
        delay = self._recheck
        now = self._clock.now()
        for queue in self._queues.values():
            deadline = queue.next_deadline()
            if deadline is not None:
                delay = min(delay, max(0.0, deadline - now))
        self._timer = asyncio.get_running_loop().call_later(delay, self._tick)

    def _tick(self) -> None:
        self._timer = None
        self.poll()
        if any(self._queues.values()):
            self._arm()
