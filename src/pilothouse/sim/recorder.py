"""Per-run measurements of the cluster simulator, all in virtual time.

- **TTFT** and **e2e** per completed request, from its arrival at the gateway (routing takes
  no virtual time) to its first token and its last.
- **ITL** per generated token: a step of duration ``d`` that runs ``k`` fused decode
  iterations gives each of its decoding requests ``k`` tokens ``d / k`` apart, so the p50 is
  the token-weighted median of ``d / k`` over steps. (A request's first token is its TTFT,
  not an inter-token gap.)
- **Output tok/s**: generated tokens of completed requests / (last completion - first
  arrival).
- **Cache hit rate**: prompt tokens served from the prefix cache at admission / prompt
  tokens, over completed requests.
- **max_queue_ratio**: every ``queue_sample_s`` the engine wait queue of every replica is
  sampled; at each sample whose mean queue is at least one request, ``max / mean`` is
  taken, and the run reports the largest. Samples with a smaller mean are skipped (a ratio
  of two near-zero numbers is noise), and so are samples after the workload's last
  independent arrival (the drain at the end empties replicas one by one, which says
  nothing about routing); a run that never queues reports 1.0 (even).
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Callable, Sequence

from pilothouse.sim.cluster_types import QueueTrace, RunMetrics, RunResult
from pilothouse.sim.replica import SimReplica
from pilothouse.sim.types import FinishedRequest, StepResult

Progress = Callable[[int], None]
_PROGRESS_EVERY = 256


def percentile(ordered: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100) of ascending values, linearly interpolated; 0 if none."""
    if not ordered:
        return 0.0
    rank = (len(ordered) - 1) * q / 100.0
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def weighted_median(values: Sequence[float], weights: Sequence[int]) -> float:
    """The value at which half the total weight is reached (0 when there is none)."""
    total = sum(weights)
    if total <= 0:
        return 0.0
    running = 0
    for value, weight in sorted(zip(values, weights, strict=True)):
        running += weight
        if 2 * running >= total:
            return value
    return 0.0  # unreachable: the running sum reaches the total


class RunRecorder:
    """Accumulates one run's measurements; :meth:`result` summarises them."""

    def __init__(self, replicas: int, progress: Progress | None = None) -> None:
        self._ttft: list[float] = []
        self._e2e: list[float] = []
        self._itl_gap = array("d")
        self._itl_weight = array("q")
        self._output_tokens = 0
        self._prompt_tokens = 0
        self._cached_tokens = 0
        self._failed = 0
        self._first_arrival: float | None = None
        self._last_finish = 0.0
        self._times: list[float] = []
        self._queues = [array("i") for _ in range(replicas)]
        self._worst_ratio = 1.0
        self._progress = progress
        self._unreported = 0

    def arrival(self, now: float) -> None:
        if self._first_arrival is None:
            self._first_arrival = now

    def step(self, result: StepResult) -> None:
        decoding = len(result.decoded)
        if decoding:
            iterations = result.iterations
            self._itl_gap.append(result.duration / iterations)
            self._itl_weight.append(decoding * iterations)

    def finished(self, done: FinishedRequest) -> None:
        ttft = done.ttft
        self._ttft.append(done.e2e_latency if ttft is None else ttft)
        self._e2e.append(done.e2e_latency)
        self._output_tokens += done.completion_tokens
        self._prompt_tokens += done.prompt_tokens
        self._cached_tokens += done.cached_tokens
        self._last_finish = max(self._last_finish, done.finish_time)
        self._tick()

    def failed(self) -> None:
        self._failed += 1
        self._tick()

    def sample_queues(
        self, now: float, replicas: Sequence[SimReplica], *, in_ratio: bool = True
    ) -> None:
        """Record every replica's engine wait queue at ``now`` (``in_ratio``: count it too)."""
        self._times.append(now)
        total = 0
        worst = 0
        for replica, series in zip(replicas, self._queues, strict=True):
            waiting = replica.engine.num_waiting
            series.append(waiting)
            total += waiting
            worst = max(worst, waiting)
        if in_ratio and total >= len(replicas):  # mean >= 1
            self._worst_ratio = max(self._worst_ratio, worst * len(replicas) / total)

    def flush_progress(self) -> None:
        if self._progress is not None and self._unreported:
            self._progress(self._unreported)
        self._unreported = 0

    def result(self, duration_s: float, events: int) -> RunResult:
        self.flush_progress()
        ttft = sorted(self._ttft)
        e2e = sorted(self._e2e)
        span = self._last_finish - (self._first_arrival or 0.0)
        metrics = RunMetrics(
            completed=len(ttft),
            failed=self._failed,
            ttft_p50_s=percentile(ttft, 50),
            ttft_p90_s=percentile(ttft, 90),
            ttft_p99_s=percentile(ttft, 99),
            itl_p50_s=weighted_median(self._itl_gap, self._itl_weight),
            e2e_p90_s=percentile(e2e, 90),
            output_tok_s=self._output_tokens / span if span > 0 else 0.0,
            cache_hit_rate=self._cached_tokens / self._prompt_tokens
            if self._prompt_tokens
            else 0.0,
            max_queue_ratio=self._worst_ratio,
        )
        trace = QueueTrace(tuple(self._times), tuple(tuple(q) for q in self._queues))
        return RunResult(metrics, trace, duration_s, events)

    def _tick(self) -> None:
        self._unreported += 1
        if self._unreported >= _PROGRESS_EVERY:
            self.flush_progress()
