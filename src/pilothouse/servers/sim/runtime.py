"""Drive the engine model in wall-clock time and hand tokens to the HTTP handlers.

One asyncio task loops: step the model at the current virtual time, sleep until the step's
end (virtual seconds / ``time_scale``), then deliver what the step produced: tokens to each
request's queue, latency observations to the metrics, KV events to the publisher. It sleeps
on an event while the model is idle. Virtual time is
``(loop.time() - started) * time_scale``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Mapping
from dataclasses import dataclass

from pilothouse.servers.sim.kv_publisher import KVEventPublisher, to_wire
from pilothouse.servers.sim.metrics import SimMetrics
from pilothouse.sim.engine_model import EngineModel
from pilothouse.sim.types import EngineRequest, FinishedRequest, KVEvent, StepResult


@dataclass(frozen=True, slots=True)
class TokenChunk:
    """New tokens of one request from one engine step; ``finished`` on its last chunk."""

    tokens: int
    finished: FinishedRequest | None = None


@dataclass(slots=True)
class _Pending:
    queue: asyncio.Queue[TokenChunk]
    arrival: float


class EngineRuntime:
    """Owns the model's clock and its stepping task (see the module docstring)."""

    def __init__(
        self,
        model: EngineModel,
        metrics: SimMetrics,
        *,
        time_scale: float = 1.0,
        lora_ids: Mapping[str, int] | None = None,
    ) -> None:
        self.model = model
        self.metrics = metrics
        self.publisher: KVEventPublisher | None = None
        self._scale = time_scale
        self._lora_ids = dict(lora_ids or {})
        self._pending: dict[str, _Pending] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._started = 0.0
        self._last_end = 0.0

    def now(self) -> float:
        """The model's clock, in virtual seconds since start."""
        return (asyncio.get_running_loop().time() - self._started) * self._scale

    def start(self) -> None:
        self._started = asyncio.get_running_loop().time()
        self._task = asyncio.get_running_loop().create_task(self._run(), name="sim-engine")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def submit(self, request: EngineRequest) -> asyncio.Queue[TokenChunk]:
        """Queue a request in the model; its tokens arrive on the returned queue."""
        now = self.now()
        self.model.add_request(request, now)
        queue: asyncio.Queue[TokenChunk] = asyncio.Queue()
        self._pending[request.request_id] = _Pending(queue, now)
        self._wake.set()
        return queue

    def release(self, request_id: str) -> None:
        """The handler is done with a request; abort it if it is still in the engine."""
        self._pending.pop(request_id, None)
        if request_id in self.model:
            self.model.abort_request(request_id, self.now())

    def register_lora(self, name: str) -> None:
        """Give adapter ``name`` a LoRA id for KV events (ids are never reused)."""
        if name not in self._lora_ids:
            self._lora_ids[name] = max(self._lora_ids.values(), default=0) + 1

    async def publish(self, events: tuple[KVEvent, ...]) -> None:
        if self.publisher is not None and events:
            wire = to_wire(events, self.model.config.block_size, self._lora_ids)
            await self.publisher.publish(wire, time.time())

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        busy = False
        last_duration = 0.0
        while True:
            if not self.model.has_work:
                busy = False
                self._wake.clear()
                await self._wake.wait()
                continue
            result = self.model.step(self._next_start(busy, last_duration))
            if result is None:
                busy = False
                continue
            busy, last_duration = True, result.duration
            self._last_end = result.end
            delay = self._started + result.end / self._scale - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            await self._deliver(result)

    def _next_start(self, busy: bool, last_duration: float) -> float:
        """Back to back while busy, so event-loop wake-up delays do not add up step after
        step; resynchronised to the clock after idling or when more than a step behind."""
        now = self.now()
        if busy and now - self._last_end <= last_duration:
            return self._last_end
        return max(now, self._last_end)

    async def _deliver(self, result: StepResult) -> None:
        pending, metrics = self._pending, self.metrics
        finished = {item.request_id: item for item in result.finished}
        for request_id in result.first_tokens:
            entry = pending.get(request_id)
            if entry is not None:
                metrics.ttft.observe(result.end - entry.arrival)
        gap = result.duration / result.iterations
        for _request_id in result.decoded:
            metrics.itl.observe(gap)
        for request_id, tokens in result.emitted.items():
            entry = pending.get(request_id)
            if entry is not None:
                entry.queue.put_nowait(TokenChunk(tokens, finished.get(request_id)))
        for item in result.finished:
            metrics.observe_finished(item)
        await self.publish(result.kv_events)
