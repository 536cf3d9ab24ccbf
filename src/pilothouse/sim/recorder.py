"""Per-run measurements of the cluster simulator, all in virtual time.

- **TTFT** and **e2e** per completed request, from its arrival at the gateway (routing takes
  no virtual time) to its first token and its last.
- **ITL** per generated token: a step of duration ``d`` that runs ``k`` fused decode
  iterations gives each of its decoding requests ``k`` tokens ``d / k`` apart, so the p50
  (p90, p99) is the token-weighted median (90th, 99th percentile) of ``d / k`` over steps.
  (A request's first token is its TTFT, not an inter-token gap.)
- **Per priority** (:class:`~pilothouse.sim.cluster_types.ClassTrace`): when the completed
  requests carry more than one ``SimRequest.priority``, each priority's TTFTs, finish times
  and output tokens, for per-class metrics (``bench sim`` reports them).
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

from pilothouse.sim.cluster_types import ClassTrace, QueueTrace, RunMetrics, RunResult
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
    return weighted_percentiles(values, weights, (50,))[0]


def weighted_percentiles(
    values: Sequence[float], weights: Sequence[int], qs: Sequence[float]
) -> list[float]:
    """For each ``q`` (0..100, ascending), the value at which ``q`` % of the total weight is
    reached (0 when there is no weight); one sort for all."""
    total = sum(weights)
    if total <= 0:
        return [0.0] * len(qs)
    found: list[float] = []
    running = 0
    pending = iter(qs)
    q = next(pending, None)
    for value, weight in sorted(zip(values, weights, strict=True)):
        running += weight
        while q is not None and 100 * running >= q * total:
            found.append(value)
            q = next(pending, None)
        if q is None:
            break
    return found


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
        self._classes: dict[int, tuple[list[float], list[float], list[int]]] = {}

    def arrival(self, now: float) -> None:
        if self._first_arrival is None:
            self._first_arrival = now

    def step(self, result: StepResult) -> None:
        decoding = len(result.decoded)
        if decoding:
            iterations = result.iterations
            self._itl_gap.append(result.duration / iterations)
            self._itl_weight.append(decoding * iterations)

    def finished(self, done: FinishedRequest, priority: int = 0) -> None:
        ttft = done.ttft
        self._ttft.append(done.e2e_latency if ttft is None else ttft)
        trace = self._classes.get(priority)
        if trace is None:
            trace = self._classes[priority] = ([], [], [])
        trace[0].append(self._ttft[-1])
        trace[1].append(done.finish_time)
        trace[2].append(done.completion_tokens)
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
        itl50, itl90, itl99 = weighted_percentiles(self._itl_gap, self._itl_weight, (50, 90, 99))
        span = self._last_finish - (self._first_arrival or 0.0)
        metrics = RunMetrics(
            completed=len(ttft),
            failed=self._failed,
            ttft_p50_s=percentile(ttft, 50),
            ttft_p90_s=percentile(ttft, 90),
            ttft_p99_s=percentile(ttft, 99),
            itl_p50_s=itl50,
            e2e_p90_s=percentile(e2e, 90),
            output_tok_s=self._output_tokens / span if span > 0 else 0.0,
            cache_hit_rate=self._cached_tokens / self._prompt_tokens
            if self._prompt_tokens
            else 0.0,
            max_queue_ratio=self._worst_ratio,
            itl_p90_s=itl90,
            itl_p99_s=itl99,
            e2e_p50_s=percentile(e2e, 50),
            e2e_p99_s=percentile(e2e, 99),
        )
        trace = QueueTrace(tuple(self._times), tuple(tuple(q) for q in self._queues))
        return RunResult(metrics, trace, duration_s, events, classes=self._class_traces())

    def _class_traces(self) -> tuple[ClassTrace, ...]:
        if len(self._classes) < 2:
            return ()
        return tuple(
            ClassTrace(priority, tuple(sorted(ttft)), tuple(finish), tuple(tokens))
            for priority, (ttft, finish, tokens) in sorted(self._classes.items(), reverse=True)
        )

    def _tick(self) -> None:
        self._unreported += 1
        if self._unreported >= _PROGRESS_EVERY:
            self.flush_progress()
