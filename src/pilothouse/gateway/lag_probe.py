"""The gateway's event-loop lag probe (opt-in: ``gateway.loop_lag_probe_s``).

One task sleeps ``interval_s`` again and again and records by how much each sleep overran:
the time the loop spent running something else (a callback that did not yield, a tokenizer
holding the GIL, a decision) before it got back to its timers. Every request in flight waits
as long. The overshoots go to the histogram ``pilothouse_event_loop_lag_seconds``, whose
buckets are fine around the 1-2 ms that matter for a proxy, so a benchmark can read the share
of samples under a bound exactly (``pilothouse bench gateway-lag`` diffs two scrapes).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Histogram

LAG_METRIC = "pilothouse_event_loop_lag_seconds"
LAG_BUCKETS = (
    0.0001, 0.00025, 0.0005, 0.00075, 0.001, 0.0015, 0.002, 0.003, 0.005, 0.0075,
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip


class LoopLagProbe:
    """Observes the overshoot of ``asyncio.sleep(interval_s)`` into a histogram until stopped.

    ``now`` is injectable so tests can script the readings.
    """

    def __init__(
        self,
        registry: CollectorRegistry,
        interval_s: float,
        now: Callable[[], float] = time.perf_counter,
    ) -> None:
        if interval_s <= 0:
            raise ValueError("interval_s must be positive")
        self.interval_s = interval_s
        self.histogram = Histogram(
            LAG_METRIC,
            "How late the gateway's event loop ran a timer (overshoot of a short sleep).",
            buckets=LAG_BUCKETS,
            registry=registry,
        )
        self._now = now
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="loop-lag-probe")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def _run(self) -> None:
        observe, now, interval = self.histogram.observe, self._now, self.interval_s
        while True:
            started = now()
            await asyncio.sleep(interval)
            observe(max(0.0, now() - started - interval))
