"""What the autoscaler reads from a running gateway: one :class:`MetricsSample` per model.

- **in flight**: the gateway's own per-replica counts (running plus queued on replicas);
- **held**: requests waiting at the gateway for a first ready replica;
- **KV-cache usage**: the mean of the engines' last scrape over the ready replicas;
- **TTFT p90**: estimated from the gateway's ``pilothouse_time_to_first_token_seconds``
  histogram, over the requests answered since the previous sample (bucket deltas,
  interpolated as Prometheus' ``histogram_quantile`` does);
- **last request**: when ``pilothouse_requests`` of the model last moved, or a request was
  held or in flight.

Read through the Prometheus registry by family name, so the gateway's metric objects stay
its own business.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Mapping

from prometheus_client import CollectorRegistry

from pilothouse.autoscale import MetricsSample
from pilothouse.endpoints.pool import EndpointPool

TTFT_FAMILY = "pilothouse_time_to_first_token_seconds"
REQUESTS_FAMILY = "pilothouse_requests"


class GatewaySignals:
    """Samples a gateway's pool, its held requests (``held(model)``) and metrics registry."""

    def __init__(
        self, pool: EndpointPool, held: Callable[[str], int], registry: CollectorRegistry
    ) -> None:
        self._pool = pool
        self._held = held
        self._registry = registry
        self._buckets: dict[str, dict[float, float]] = {}
        self._requests: dict[str, float] = {}
        self._last_request: dict[str, float] = {}

    def sample(self, model: str, now: float) -> MetricsSample:
        endpoints = [e for e in self._pool.endpoints() if e.model == model]
        ready = [e for e in endpoints if e.ready]
        usage = [e.metrics.kv_cache_usage for e in ready if e.metrics.updated_at is not None]
        buckets, requests = self._read(model)
        held = self._held(model)
        in_flight = sum(e.in_flight for e in endpoints)
        if requests > self._requests.get(model, 0.0) or held or in_flight:
            self._last_request[model] = now
        self._requests[model] = requests
        previous = self._buckets.get(model, {})
        self._buckets[model] = buckets
        return MetricsSample(
            at=now,
            ready=len(ready),
            in_flight=in_flight,
            held=held,
            kv_cache_usage=sum(usage) / len(usage) if usage else None,
            ttft_p90_s=quantile_of_delta(previous, buckets, 0.9),
        )

    def last_request(self, model: str) -> float | None:
        return self._last_request.get(model)

    def _read(self, model: str) -> tuple[dict[float, float], float]:
        """The model's cumulative TTFT buckets (upper bound -> count) and request total."""
        buckets: dict[float, float] = defaultdict(float)
        requests = 0.0
        for family in self._registry.collect():
            if family.name not in (TTFT_FAMILY, REQUESTS_FAMILY):
                continue
            for sample in family.samples:
                if sample.labels.get("model") != model:
                    continue
                if sample.name == TTFT_FAMILY + "_bucket":
                    buckets[float(sample.labels["le"])] += sample.value
                elif sample.name == REQUESTS_FAMILY + "_total":
                    requests += sample.value
        return dict(buckets), requests


def quantile_of_delta(
    before: Mapping[float, float], after: Mapping[float, float], q: float
) -> float | None:
    """The ``q`` quantile of the observations added between two cumulative histograms."""
    bounds = sorted(after)
    deltas = [after[b] - before.get(b, 0.0) for b in bounds]
    if not deltas or deltas[-1] <= 0:
        return None
    rank = q * deltas[-1]
    lower, below = 0.0, 0.0
    for bound, cumulative in zip(bounds, deltas, strict=True):
        if cumulative >= rank:
            if bound == float("inf"):
                return lower  # beyond the last finite bucket: its bound is the best guess
            inside = cumulative - below
            fraction = (rank - below) / inside if inside > 0 else 1.0
            return lower + (bound - lower) * fraction
        lower, below = bound, cumulative
    return lower
