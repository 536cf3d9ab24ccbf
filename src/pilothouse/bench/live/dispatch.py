"""When a live benchmark sends each workload request: open loop or closed loop.

- **Open loop** (``--qps``): independent requests are sent at their arrival times (the
  workload's seconds divided by the time scale), whatever is still in flight.
- **Closed loop** (``--concurrency C``): C workers each take the next independent request
  as soon as they are free, ignoring its arrival time.

In both, a follow-up (``after`` set: the next turn of a chat, the next step of an agent) is
sent its ``arrival_s`` (think time, tool latency; divided by the time scale) after its
predecessor *completes*; in closed loop the worker that ran the predecessor waits and sends
it. A follow-up whose predecessor failed is never sent and counts as failed, as in the
simulator. The workload stream is read one independent request ahead, so the follow-ups
that the built-in workloads list right after their parent are known before it is sent.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass

from pilothouse.bench.live.client import RequestOutcome
from pilothouse.sim.cluster_types import SimRequest

Sender = Callable[[SimRequest], Awaitable[RequestOutcome]]
"""Sends one request and records its outcome."""


@dataclass(frozen=True, slots=True)
class Released:
    """A follow-up that may be sent ``at`` (loop time) or, with ``at`` None, has failed."""

    request: SimRequest
    at: float | None


class RequestStream:
    """The workload's requests: independent ones in order, follow-ups parked by parent."""

    def __init__(self, requests: Iterable[SimRequest], scale: float) -> None:
        self._it: Iterator[SimRequest] = iter(requests)
        self._scale = scale
        self._next: SimRequest | None = None
        self._parked: dict[str, list[SimRequest]] = {}
        self._ended: dict[str, float | None] = {}  # request id -> completion time, None: failed
        self._seen: set[str] = set()
        self._late: list[Released] = []  # follow-ups read after their parent had ended
        self._advance()

    def next_independent(self) -> SimRequest | None:
        """The next independent request (``None`` at the end); reads one ahead."""
        current = self._next
        if current is not None:
            self._advance()
        return current

    def take_late(self) -> list[Released]:
        late, self._late = self._late, []
        return late

    def finish(self, request_id: str, done_at: float | None) -> list[Released]:
        """Record an end (``done_at`` None: failed) and release the parked follow-ups."""
        self._ended[request_id] = done_at
        return [self._release(child, done_at) for child in self._parked.pop(request_id, ())]

    def _release(self, child: SimRequest, done_at: float | None) -> Released:
        return Released(child, None if done_at is None else done_at + child.arrival_s / self._scale)

    def _advance(self) -> None:
        self._next = None
        for request in self._it:
            self._seen.add(request.request_id)
            if request.after is None:
                self._next = request
                return
            if request.after in self._ended:
                self._late.append(self._release(request, self._ended[request.after]))
            elif request.after in self._seen:
                self._parked.setdefault(request.after, []).append(request)
            else:
                raise ValueError(
                    f"follow-up {request.request_id!r} names {request.after!r}, which comes "
                    "later or not at all: put follow-ups after their parent in the workload"
                )


class Dispatcher:
    """Runs one level's requests through ``send``; ``on_all_sent`` marks the last arrival."""

    def __init__(
        self,
        stream: RequestStream,
        send: Sender,
        on_unsent: Callable[[], None],
        on_all_sent: Callable[[], None],
    ) -> None:
        self._stream = stream
        self._send = send
        self._on_unsent = on_unsent
        self._on_all_sent = on_all_sent

    async def open_loop(self, started: float, scale: float) -> None:
        async with asyncio.TaskGroup() as group:
            while (request := self._stream.next_independent()) is not None:
                self._spawn_late(group)
                delay = started + request.arrival_s / scale - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                group.create_task(self._chain(request, None, group))
            self._on_all_sent()
            self._spawn_late(group)

    async def closed_loop(self, concurrency: int) -> None:
        async with asyncio.TaskGroup() as group:
            for _ in range(concurrency):
                group.create_task(self._worker(group))

    async def _worker(self, group: asyncio.TaskGroup) -> None:
        while True:
            for late in self._stream.take_late():
                await self._released(late, group=None)
            request = self._stream.next_independent()
            if request is None:
                self._on_all_sent()
                self._spawn_late(group)
                return
            await self._chain(request, None, None)

    def _spawn_late(self, group: asyncio.TaskGroup) -> None:
        for late in self._stream.take_late():
            group.create_task(self._released(late, group))

    async def _released(self, late: Released, group: asyncio.TaskGroup | None) -> None:
        if late.at is None:
            self._fail_unsent(late.request)
            return
        await self._chain(late.request, late.at, group)

    async def _chain(
        self, request: SimRequest, at: float | None, group: asyncio.TaskGroup | None
    ) -> None:
        """Send ``request`` (at loop time ``at``), then its follow-ups, recursively.

        With a task ``group`` (open loop) each follow-up gets its own task; without one
        (closed loop) they run in this task, one after the other.
        """
        if at is not None:
            await asyncio.sleep(max(0.0, at - time.perf_counter()))
        outcome = await self._send(request)
        done_at = outcome.done_at if outcome.ok else None
        for child in self._stream.finish(request.request_id, done_at):
            if child.at is None:
                self._fail_unsent(child.request)
            elif group is not None:
                group.create_task(self._chain(child.request, child.at, group))
            else:
                await self._chain(child.request, child.at, None)

    def _fail_unsent(self, request: SimRequest) -> None:
        self._on_unsent()
        for child in self._stream.finish(request.request_id, None):
            self._fail_unsent(child.request)
