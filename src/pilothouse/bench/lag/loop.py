"""An event-loop lag probe: how late the asyncio loop runs a timer while work is in flight.

:class:`LoopLagProbe` sleeps ``interval_s`` (1 ms) again and again and records how much later
than asked each sleep returned: the time the loop spent running something else (a callback
that did not yield, a tokenizer holding the GIL) before it got back to its timers. Every
request in flight waits as long. Use it as an async context manager around the work::

    async with LoopLagProbe() as probe:
        await asyncio.gather(*work)
    print(probe.stats())

:func:`lag_under_load` runs ``concurrency`` workers that each await ``step(i)`` for
``requests`` indexes in total, and measures the lag meanwhile.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from types import TracebackType

from pilothouse.bench.loadgen import percentile


@dataclass(frozen=True, slots=True)
class LagStats:
    """Lag of the loop's timers, in milliseconds."""

    samples: int
    p50_ms: float
    p99_ms: float
    max_ms: float

    @classmethod
    def of(cls, lags_s: list[float]) -> LagStats:
        ordered = sorted(lags_s)
        if not ordered:
            return cls(0, 0.0, 0.0, 0.0)
        p50, p99 = (percentile(ordered, q) * 1000 for q in (50, 99))
        return cls(len(ordered), p50, p99, ordered[-1] * 1000)


class LoopLagProbe:
    """Records the overshoot of ``asyncio.sleep(interval_s)`` until stopped."""

    def __init__(
        self, interval_s: float = 0.001, now: Callable[[], float] = time.perf_counter
    ) -> None:
        self.interval_s = interval_s
        self._now = now
        self.lags_s: list[float] = []
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> LoopLagProbe:
        self._task = asyncio.create_task(self._run(), name="loop-lag-probe")
        await asyncio.sleep(0)  # let it take its first sample before the work starts
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    def stats(self) -> LagStats:
        return LagStats.of(self.lags_s)

    async def _run(self) -> None:
        while True:
            started = self._now()
            await asyncio.sleep(self.interval_s)
            self.lags_s.append(max(0.0, self._now() - started - self.interval_s))


async def lag_under_load(
    step: Callable[[int], Awaitable[object]],
    requests: int,
    concurrency: int,
    interval_s: float = 0.001,
) -> LagStats:
    """The loop's lag while ``concurrency`` workers await ``step(i)`` for ``i < requests``."""
    next_index = iter(range(requests))

    async def worker() -> None:
        for i in next_index:
            await step(i)

    async with LoopLagProbe(interval_s) as probe:
        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return probe.stats()
