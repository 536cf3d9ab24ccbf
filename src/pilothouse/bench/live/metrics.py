"""What a live benchmark reads from the engines' Prometheus ``/metrics``.

- **Cache hit rate**: ``vllm:prefix_cache_hits`` and ``vllm:prefix_cache_queries`` (tokens;
  vLLM v1 counters, exposed with ``_total``) are read from every ``--metrics-url`` before
  and after a run; the rate is the sum of the hit deltas over the sum of the query deltas.
  Older vLLM names (``vllm:gpu_prefix_cache_*``) count too. If any URL cannot be read at
  either end, or no engine counted a query, the rate is not measured (reported as 0 with a
  note).
- **Queues**: while a run is in progress a sampler reads ``vllm:num_requests_waiting`` of
  every URL every ``interval_s`` seconds (all URLs concurrently); ``max_queue_ratio`` is
  computed from those samples exactly as the simulator does
  (:mod:`pilothouse.sim.recorder`): at each sample whose mean queue is at least one request,
  ``max / mean``, the largest over the samples taken before the last independent request
  was sent; 1.0 if the engines never queued. A URL that fails a sample counts as 0 there.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

HITS = ("vllm:prefix_cache_hits", "vllm:gpu_prefix_cache_hits")
QUERIES = ("vllm:prefix_cache_queries", "vllm:gpu_prefix_cache_queries")
WAITING = ("vllm:num_requests_waiting",)
_WANTED = (*HITS, *QUERIES, *WAITING)
_TIMEOUT = aiohttp.ClientTimeout(total=2.0)


@dataclass(frozen=True, slots=True)
class EngineCounters:
    """One scrape of one engine: cumulative prefix-cache tokens and the wait queue."""

    hits: float
    queries: float
    waiting: int


def parse_counters(text: str) -> EngineCounters:
    """The few series a benchmark needs from a Prometheus exposition (summed over labels)."""
    kept = "\n".join(line for line in text.splitlines() if line.startswith(_WANTED))
    sums = dict.fromkeys(_WANTED, 0.0)
    for family in text_string_to_metric_families(kept + "\n"):
        for sample in family.samples:
            name = sample.name.removesuffix("_total")
            if name in sums:
                sums[name] += sample.value
    return EngineCounters(
        hits=sum(sums[n] for n in HITS),
        queries=sum(sums[n] for n in QUERIES),
        waiting=int(sum(sums[n] for n in WAITING)),
    )


async def scrape(session: aiohttp.ClientSession, url: str) -> EngineCounters | None:
    """One engine's counters, or ``None`` when it cannot be read."""
    try:
        async with session.get(url, timeout=_TIMEOUT) as resp:
            if resp.status != 200:
                return None
            return parse_counters(await resp.text())
    except (aiohttp.ClientError, TimeoutError, ValueError):
        return None


async def scrape_all(
    session: aiohttp.ClientSession, urls: Sequence[str]
) -> list[EngineCounters | None]:
    return list(await asyncio.gather(*(scrape(session, url) for url in urls)))


def cache_hit_rate(
    before: Sequence[EngineCounters | None], after: Sequence[EngineCounters | None]
) -> float | None:
    """Hits / queries over the run, or ``None`` when it could not be measured."""
    pairs = [(b, a) for b, a in zip(before, after, strict=True) if b is not None and a is not None]
    if not pairs or len(pairs) != len(before):
        return None
    hits = sum(a.hits - b.hits for b, a in pairs)
    queries = sum(a.queries - b.queries for b, a in pairs)
    return hits / queries if queries > 0 else None


@dataclass(slots=True)
class QueueSampler:
    """Samples every engine's wait queue in the background while a run is in progress."""

    session: aiohttp.ClientSession
    urls: Sequence[str]
    interval_s: float
    times: list[float] = field(default_factory=list)
    queues: list[list[int]] = field(default_factory=list)
    worst_ratio: float = 1.0
    counting: bool = True  # set False once the last independent request was sent
    _task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.queues = [[] for _ in self.urls]
        self._task = asyncio.get_running_loop().create_task(self._run(), name="queue-sampler")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        started = time.perf_counter()
        while True:
            at = time.perf_counter() - started
            counting = self.counting
            self.record(at, await scrape_all(self.session, self.urls), counting=counting)
            await asyncio.sleep(max(0.0, started + at + self.interval_s - time.perf_counter()))

    def record(
        self, at: float, scraped: Sequence[EngineCounters | None], *, counting: bool
    ) -> None:
        waiting = [0 if s is None else s.waiting for s in scraped]
        self.times.append(at)
        for series, value in zip(self.queues, waiting, strict=True):
            series.append(value)
        total = sum(waiting)
        if counting and waiting and total >= len(waiting):  # mean >= 1
            self.worst_ratio = max(self.worst_ratio, max(waiting) * len(waiting) / total)
