"""The gateway's lag histogram as a benchmark reads it: scraped, diffed, summarised.

``pilothouse_event_loop_lag_seconds`` (:mod:`pilothouse.gateway.lag_probe`) is cumulative
since the gateway started; two scrapes around a run, subtracted, give the run's samples per
bucket. Quantiles are interpolated linearly inside their bucket (as PromQL's
``histogram_quantile`` does); whether a bound holds is exact when the bound is a bucket edge
(2 ms is): the share of samples at or under it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from pilothouse.bench.processes import BenchError
from pilothouse.gateway.lag_probe import LAG_METRIC


@dataclass(frozen=True, slots=True)
class LagHistogram:
    """Cumulative counts per upper bound (``inf`` last), and the sum of the samples."""

    bounds: tuple[float, ...]
    counts: tuple[float, ...]
    total_s: float

    @property
    def samples(self) -> int:
        return int(self.counts[-1]) if self.counts else 0

    def minus(self, earlier: LagHistogram) -> LagHistogram:
        if earlier.bounds != self.bounds:
            raise BenchError("the lag histogram's buckets changed between two scrapes")
        counts = tuple(a - b for a, b in zip(self.counts, earlier.counts, strict=True))
        return LagHistogram(self.bounds, counts, self.total_s - earlier.total_s)

    def quantile(self, q: float) -> float:
        """Seconds; interpolated in its bucket (the last finite bound if it is in ``+Inf``)."""
        if not self.samples:
            return math.nan
        rank = q / 100 * self.samples
        lower, below = 0.0, 0.0
        for bound, count in zip(self.bounds, self.counts, strict=True):
            if count >= rank and count > below:
                if math.isinf(bound):
                    return lower
                return lower + (bound - lower) * (rank - below) / (count - below)
            lower, below = bound, count
        return lower

    def max_bound(self) -> float:
        """The upper bound of the highest bucket with a sample: the max is at most this."""
        below = 0.0
        highest = 0.0
        for bound, count in zip(self.bounds, self.counts, strict=True):
            if count > below:
                highest = bound
            below = count
        return highest

    def within(self, bound_s: float) -> bool:
        """Whether at least 99 % of the samples are at most ``bound_s`` (a bucket edge)."""
        at = next((c for b, c in zip(self.bounds, self.counts, strict=True) if b >= bound_s), 0)
        return self.samples > 0 and at >= 0.99 * self.samples

    def to_json(self) -> dict[str, object]:
        return {
            "samples": self.samples,
            "mean_ms": self.total_s / self.samples * 1000 if self.samples else None,
            "p50_ms": self.quantile(50) * 1000,
            "p99_ms": self.quantile(99) * 1000,
            "max_at_most_ms": self.max_bound() * 1000,
            "buckets": {str(b): c for b, c in zip(self.bounds, self.counts, strict=True)},
        }


def parse_lag(text: str) -> LagHistogram:
    """The lag histogram from a ``/metrics`` page; an error when the probe is off."""
    for family in text_string_to_metric_families(text):
        if family.name != LAG_METRIC:
            continue
        buckets = sorted(
            (float(s.labels["le"]), s.value) for s in family.samples if s.name.endswith("_bucket")
        )
        total = next((s.value for s in family.samples if s.name.endswith("_sum")), 0.0)
        return LagHistogram(tuple(b for b, _ in buckets), tuple(c for _, c in buckets), total)
    raise BenchError(f"no {LAG_METRIC} on /metrics: is gateway.loop_lag_probe_s set?")


async def scrape_lag(http: aiohttp.ClientSession) -> LagHistogram:
    async with http.get("/metrics") as response:
        return parse_lag(await response.text())
