"""A live run's request outcomes, summarised as the simulator's :class:`RunMetrics`.

Definitions follow :mod:`pilothouse.sim.recorder` so the two modes compare directly, with
every duration multiplied by the run's time scale (simulated seconds per wall second, 1 for
real engines), so a fleet of ``engine sim --time-scale X`` replicas reports simulated time:

- **TTFT** and **e2e** per completed request, from the moment it was sent to its first text
  chunk and to the end of its stream (a stream without text counts its e2e as TTFT);
- **ITL p50**: the median of the per-token gaps of all completed requests
  (:mod:`pilothouse.bench.live.client`);
- **output tok/s**: generated tokens of completed requests / (last completion - first send);
- **cache hit rate** and **max_queue_ratio**: from the engines' metrics
  (:mod:`pilothouse.bench.live.metrics`); 0 when they could not be measured.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pilothouse.bench.live.client import RequestOutcome
from pilothouse.sim.cluster_types import RunMetrics
from pilothouse.sim.recorder import percentile, weighted_percentiles


@dataclass(slots=True)
class LiveRecorder:
    """Collects one run's outcomes; ``scale`` converts wall seconds to reported seconds."""

    scale: float = 1.0
    completed: list[RequestOutcome] = field(default_factory=list)
    failed: int = 0
    first_error: str | None = None
    first_sent: float | None = None

    def add(self, outcome: RequestOutcome) -> None:
        if self.first_sent is None or outcome.sent_at < self.first_sent:
            self.first_sent = outcome.sent_at
        if outcome.ok:
            self.completed.append(outcome)
            return
        self.failed += 1
        if self.first_error is None:
            self.first_error = outcome.error

    def unsent(self) -> None:
        """A follow-up that was never sent because its predecessor failed."""
        self.failed += 1

    @property
    def done(self) -> int:
        return len(self.completed) + self.failed

    def metrics(self, cache_hit_rate: float | None, max_queue_ratio: float | None) -> RunMetrics:
        scale = self.scale
        ttft = sorted(_ttft(o) * scale for o in self.completed)
        e2e = sorted((o.done_at - o.sent_at) * scale for o in self.completed)
        gaps = [gap * scale for o in self.completed for gap in o.gaps]
        itl50, itl90, itl99 = weighted_percentiles(gaps, [1] * len(gaps), (50, 90, 99))
        return RunMetrics(
            completed=len(self.completed),
            failed=self.failed,
            ttft_p50_s=percentile(ttft, 50),
            ttft_p90_s=percentile(ttft, 90),
            ttft_p99_s=percentile(ttft, 99),
            itl_p50_s=itl50,
            e2e_p90_s=percentile(e2e, 90),
            output_tok_s=self._throughput(),
            cache_hit_rate=cache_hit_rate or 0.0,
            max_queue_ratio=max_queue_ratio or 0.0,
            itl_p90_s=itl90,
            itl_p99_s=itl99,
            e2e_p50_s=percentile(e2e, 50),
            e2e_p99_s=percentile(e2e, 99),
        )

    def duration_s(self) -> float:
        """Reported seconds from the first send to the last completion (0 without any)."""
        if not self.completed or self.first_sent is None:
            return 0.0
        return (max(o.done_at for o in self.completed) - self.first_sent) * self.scale

    def _throughput(self) -> float:
        span = self.duration_s()
        tokens = sum(o.completion_tokens for o in self.completed)
        return tokens / span if span > 0 else 0.0


def _ttft(outcome: RequestOutcome) -> float:
    end = outcome.done_at if outcome.first_token_at is None else outcome.first_token_at
    return end - outcome.sent_at
