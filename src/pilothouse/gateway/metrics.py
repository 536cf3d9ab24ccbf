"""The gateway's Prometheus metrics, in a registry of its own (never the global one).

The request path updates plain numbers; :class:`GatewayMetrics` turns them into metric
families when ``/metrics`` is scraped (a ``prometheus_client`` collector). A
``prometheus_client`` ``Counter``, ``Gauge`` or ``Histogram`` takes a lock and goes
through a value object on every update: eight of them per request were about 4 % of the
gateway's CPU per request. Every update happens on the gateway's event loop, so there is
nothing to lock; a scrape reads each number whole (the GIL), at worst one request older.
The series, their names, types, help texts and labels are those the ``prometheus_client``
classes exported (counters with ``_total`` and ``_created``).
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Iterator, Sequence

from prometheus_client import CollectorRegistry
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector


class CounterValue:
    """One labelled counter series."""

    __slots__ = ("created", "value")

    def __init__(self) -> None:
        self.value = 0.0
        self.created = time.time()

    def inc(self, amount: float = 1.0) -> None:
        if amount < 0:
            raise ValueError("counters only go up")
        self.value += amount


class GaugeValue:
    """One labelled gauge series."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0.0

    def inc(self, amount: float = 1.0) -> None:
        self.value += amount

    def dec(self, amount: float = 1.0) -> None:
        self.value -= amount

    def set(self, value: float) -> None:
        self.value = value


class HistogramValue:
    """One labelled histogram series: a count per bucket (not cumulative) and the sum."""

    __slots__ = ("_bounds", "counts", "created", "sum")

    def __init__(self, bounds: Sequence[float]) -> None:
        self._bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last one: above every bound (+Inf)
        self.sum = 0.0
        self.created = time.time()

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self._bounds, value)] += 1  # le: a value on a bound is in it
        self.sum += value


Series = CounterValue | GaugeValue | HistogramValue


class _Family:
    """A metric's series by label values, created on first use."""

    __slots__ = ("_bounds", "_series", "doc", "kind", "labelnames", "name")

    def __init__(
        self,
        kind: str,
        name: str,
        doc: str,
        labelnames: Sequence[str] = (),
        bounds: Sequence[float] = (),
    ) -> None:
        self.kind, self.name, self.doc = kind, name, doc
        self.labelnames = tuple(labelnames)
        self._bounds = tuple(bounds)
        self._series: dict[tuple[str, ...], CounterValue | GaugeValue | HistogramValue] = {}

    def series(
        self,
    ) -> Iterator[tuple[tuple[str, ...], CounterValue | GaugeValue | HistogramValue]]:
        yield from list(self._series.items())

    def _new(self) -> CounterValue | GaugeValue | HistogramValue:
        if self.kind == "counter":
            return CounterValue()
        if self.kind == "gauge":
            return GaugeValue()
        return HistogramValue(self._bounds)

    def _get(self, values: tuple[str, ...]) -> Series:
        found = self._series.get(values)
        if found is None:
            if len(values) != len(self.labelnames):
                raise ValueError(f"{self.name} takes labels {self.labelnames}, got {values}")
            found = self._series[values] = self._new()
        return found


class Counters(_Family):
    def __init__(self, name: str, doc: str, labelnames: Sequence[str]) -> None:
        super().__init__("counter", name, doc, labelnames)

    def labels(self, *values: str) -> CounterValue:
        return self._get(values)  # type: ignore[return-value]


class Gauges(_Family):
    def __init__(self, name: str, doc: str, labelnames: Sequence[str]) -> None:
        super().__init__("gauge", name, doc, labelnames)

    def labels(self, *values: str) -> GaugeValue:
        return self._get(values)  # type: ignore[return-value]


class Histograms(_Family):
    def __init__(
        self, name: str, doc: str, labelnames: Sequence[str], buckets: Sequence[float]
    ) -> None:
        super().__init__("histogram", name, doc, labelnames, sorted(buckets))

    def labels(self, *values: str) -> HistogramValue:
        return self._get(values)  # type: ignore[return-value]


_LATENCY_BUCKETS = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    120.0,
)
_ITL_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
_DECISION_BUCKETS = (1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 1e-2)


class GatewayMetrics(Collector):
    """Every series the gateway exports, bound to one registry."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        self.requests = Counters(
            "pilothouse_requests",
            "Requests answered, by model, route and status code.",
            ["model", "route", "status"],
        )
        self.ttft = Histograms(
            "pilothouse_time_to_first_token_seconds",
            "Time from receiving a request to the first byte of the engine's answer.",
            ["model"],
            _LATENCY_BUCKETS,
        )
        self.itl = Histograms(
            "pilothouse_inter_token_latency_seconds",
            "Time between successive streamed chunks.",
            ["model"],
            _ITL_BUCKETS,
        )
        self.e2e = Histograms(
            "pilothouse_e2e_request_latency_seconds",
            "Time from receiving a request to sending its last byte.",
            ["model"],
            _LATENCY_BUCKETS,
        )
        self.in_flight = Gauges(
            "pilothouse_endpoint_in_flight_requests",
            "Requests the gateway has in flight on each endpoint.",
            ["endpoint"],
        )
        self._decision = Histograms(
            "pilothouse_scheduling_decision_seconds",
            "Time the scheduler took to pick an endpoint.",
            [],
            _DECISION_BUCKETS,
        )
        self.decision = self._decision.labels()
        self.http_refused = Counters(
            "pilothouse_http_refused",
            "Requests refused by the HTTP limits before reaching the gateway's routes "
            "(431: head too large, 408: head or body too slow).",
            ["status"],
        )
        self.retries = Counters(
            "pilothouse_upstream_retries",
            "Requests retried on another endpoint.",
            ["model"],
        )
        self.split_requests = Counters(
            "pilothouse_traffic_split_requests",
            "Requests to a traffic split's public name, by the version that got them and "
            "status code (compare versions with the model-labelled latency series).",
            ["public_model", "model", "status"],
        )
        self.tokens = Counters(
            "pilothouse_tokens",
            "Tokens reported by engines, by model and kind.",
            ["model", "kind"],
        )
        self._families: tuple[_Family, ...] = (
            self.requests,
            self.ttft,
            self.itl,
            self.e2e,
            self.in_flight,
            self._decision,
            self.http_refused,
            self.retries,
            self.split_requests,
            self.tokens,
        )
        self.registry.register(self)

    def describe(self) -> Iterator[Metric]:
        """The families with no samples (the registry checks names once, at register)."""
        for family in self._families:
            yield _empty(family)

    def collect(self) -> Iterator[Metric]:
        for family in self._families:
            metric = _empty(family)
            for values, series in family.series():
                labels = list(values)
                if isinstance(series, CounterValue):
                    assert isinstance(metric, CounterMetricFamily)
                    metric.add_metric(labels, series.value, created=series.created)
                elif isinstance(series, GaugeValue):
                    assert isinstance(metric, GaugeMetricFamily)
                    metric.add_metric(labels, series.value)
                else:
                    assert isinstance(metric, HistogramMetricFamily)
                    _add_histogram(metric, family, labels, series)
            yield metric


def _empty(family: _Family) -> Metric:
    if family.kind == "counter":
        return CounterMetricFamily(family.name, family.doc, labels=family.labelnames)
    if family.kind == "gauge":
        return GaugeMetricFamily(family.name, family.doc, labels=family.labelnames)
    return HistogramMetricFamily(family.name, family.doc, labels=family.labelnames)


def _add_histogram(
    metric: HistogramMetricFamily, family: _Family, labels: list[str], series: HistogramValue
) -> None:
    cumulative, buckets = 0, []
    for bound, count in zip((*family._bounds, float("inf")), series.counts, strict=True):
        cumulative += count
        buckets.append((_le(bound), cumulative))
    metric.add_metric(labels, buckets, series.sum)
    metric.add_sample(
        family.name + "_created", dict(zip(family.labelnames, labels, strict=True)), series.created
    )


def _le(bound: float) -> str:
    """A bucket's bound as Prometheus writes it (``prometheus_client``'s own spelling)."""
    return "+Inf" if bound == float("inf") else repr(float(bound))
