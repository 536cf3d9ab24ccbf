"""A closed-loop HTTP load generator and the percentile helpers its reports use.

``concurrency`` workers each send one request, read the whole answer and send the next.
After a warm-up the measured window opens: CPU meters are read, and every request that
completes before the window closes is counted. The window closes after ``duration_s`` or
when ``requests`` have completed, and the meters are read again at that very moment, so CPU
time and request counts cover exactly the same interval.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import aiohttp

CpuMeter = Callable[[], float]
"""Returns a CPU-seconds counter (user + system) of something being measured."""

_HEADERS = {"Content-Type": "application/json"}
_SKIP_AUTO = frozenset({"Accept-Encoding", "User-Agent"})
_DONE = b"data: [DONE]"
_ERROR_BACKOFF_S = 0.01


@dataclass(frozen=True, slots=True)
class LoadSpec:
    """One closed-loop run against one URL."""

    url: str
    body: bytes
    stream: bool
    concurrency: int
    warmup_s: float
    duration_s: float | None = None
    requests: int | None = None
    timeout_s: float = 30.0
    max_window_s: float = 300.0
    headers: Mapping[str, str] = field(default_factory=dict)
    """Sent with every request besides ``Content-Type`` (an ``Authorization``, say)."""

    def __post_init__(self) -> None:
        if self.concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        if (self.duration_s is None) == (self.requests is None):
            raise ValueError("give exactly one of duration_s and requests")


@dataclass(frozen=True, slots=True)
class LoadResult:
    """What one measured window saw."""

    completed: int
    errors: int
    window_s: float
    latencies_s: list[float]
    cpu_s: dict[str, float]
    first_error: str | None = None


@dataclass(frozen=True, slots=True)
class LatencySummary:
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    max_ms: float


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100) of ascending values, linearly interpolated."""
    if not sorted_values:
        return math.nan
    if not 0.0 <= q <= 100.0:
        raise ValueError(f"percentile {q} is outside 0..100")
    rank = (len(sorted_values) - 1) * q / 100.0
    low = math.floor(rank)
    high = min(low + 1, len(sorted_values) - 1)
    frac = rank - low
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * frac


def summarize(latencies_s: Sequence[float]) -> LatencySummary:
    """p50/p90/p99/mean/max in milliseconds (NaN when there are no samples)."""
    ordered = sorted(latencies_s)
    mean = sum(ordered) / len(ordered) if ordered else math.nan
    return LatencySummary(
        p50_ms=percentile(ordered, 50) * 1e3,
        p90_ms=percentile(ordered, 90) * 1e3,
        p99_ms=percentile(ordered, 99) * 1e3,
        mean_ms=mean * 1e3,
        max_ms=(ordered[-1] if ordered else math.nan) * 1e3,
    )


@dataclass(slots=True)
class _Window:
    """Shared state of one run: which completions count, and the meters at both edges."""

    spec: LoadSpec
    meters: Mapping[str, CpuMeter]
    closed: asyncio.Event = field(default_factory=asyncio.Event)
    measuring: bool = False
    stopping: bool = False
    started_at: float = 0.0
    ended_at: float = 0.0
    cpu_start: dict[str, float] = field(default_factory=dict)
    cpu_end: dict[str, float] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    first_error: str | None = None

    def open(self) -> None:
        self.cpu_start = {name: meter() for name, meter in self.meters.items()}
        self.started_at = time.perf_counter()
        self.measuring = True

    def close(self) -> None:
        if not self.measuring:
            return
        self.ended_at = time.perf_counter()
        self.cpu_end = {name: meter() for name, meter in self.meters.items()}
        self.measuring = False
        self.closed.set()

    def record(self, latency_s: float, error: str | None) -> None:
        if error is not None and self.first_error is None:
            self.first_error = error
        if not self.measuring:
            return
        if error is None:
            self.latencies.append(latency_s)
        else:
            self.errors += 1
        target = self.spec.requests
        if target is not None and len(self.latencies) + self.errors >= target:
            self.close()

    def result(self) -> LoadResult:
        cpu = {name: self.cpu_end[name] - self.cpu_start[name] for name in self.cpu_end}
        return LoadResult(
            completed=len(self.latencies),
            errors=self.errors,
            window_s=self.ended_at - self.started_at,
            latencies_s=self.latencies,
            cpu_s=cpu,
            first_error=self.first_error,
        )


async def _one_request(
    session: aiohttp.ClientSession, spec: LoadSpec, headers: Mapping[str, str]
) -> str | None:
    """Send one request and read the whole answer; an error description, or None when fine."""
    async with session.post(
        spec.url, data=spec.body, headers=headers, skip_auto_headers=_SKIP_AUTO
    ) as resp:
        if not spec.stream:
            body = await resp.read()
            if resp.status != 200 or not body:
                return f"HTTP {resp.status}: {body[:200]!r}"
            return None
        tail = b""
        async for chunk in resp.content.iter_any():
            tail = (tail + chunk)[-64:]
        if resp.status != 200 or _DONE not in tail:
            return f"HTTP {resp.status}: stream ended without [DONE]: {tail!r}"
        return None


async def _worker(session: aiohttp.ClientSession, window: _Window) -> None:
    headers = {**_HEADERS, **window.spec.headers}
    while not window.stopping:
        started = time.perf_counter()
        try:
            error = await _one_request(session, window.spec, headers)
        except (aiohttp.ClientError, TimeoutError) as exc:
            error = f"{type(exc).__name__}: {exc}"
        window.record(time.perf_counter() - started, error)
        if error is not None:
            await asyncio.sleep(_ERROR_BACKOFF_S)


async def run_load(spec: LoadSpec, meters: Mapping[str, CpuMeter]) -> LoadResult:
    """Warm up, measure one window, stop the workers; ``meters`` are read at the window edges."""
    connector = aiohttp.TCPConnector(limit=spec.concurrency, keepalive_timeout=60)
    timeout = aiohttp.ClientTimeout(total=spec.timeout_s)
    window = _Window(spec, meters)
    async with aiohttp.ClientSession(
        connector=connector, timeout=timeout, auto_decompress=False
    ) as session:
        workers = [asyncio.create_task(_worker(session, window)) for _ in range(spec.concurrency)]
        try:
            await asyncio.sleep(spec.warmup_s)
            window.open()
            if spec.duration_s is not None:
                await asyncio.sleep(spec.duration_s)
            else:
                # Bounded: a slow target yields fewer requests in the window, not a hang.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(window.closed.wait(), spec.max_window_s)
            window.close()
            window.stopping = True
            await asyncio.wait(workers, timeout=spec.timeout_s + 1.0)
        finally:
            for task in workers:
                task.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
    return window.result()
