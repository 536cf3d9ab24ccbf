"""The gateway's Prometheus metrics, in a registry of its own (never the global one)."""

from __future__ import annotations

from typing import Generic, TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

M = TypeVar("M", Counter, Gauge, Histogram)


class _Children(Generic[M]):
    """A labelled metric whose children are looked up once per label set.

    ``prometheus_client``'s ``labels()`` validates and locks on every call; the request path
    calls it several times per request for a handful of label sets.
    """

    __slots__ = ("_cache", "metric")

    def __init__(self, metric: M) -> None:
        self.metric: M = metric
        self._cache: dict[tuple[str, ...], M] = {}

    def labels(self, *values: str) -> M:
        child = self._cache.get(values)
        if child is None:
            child = self._cache[values] = self.metric.labels(*values)
        return child


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


class GatewayMetrics:
    """Every series the gateway exports, bound to one registry."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = _Children(
            Counter(
                "pilothouse_requests",
                "Requests answered, by model, route and status code.",
                ["model", "route", "status"],
                registry=r,
            )
        )
        self.ttft = _Children(
            Histogram(
                "pilothouse_time_to_first_token_seconds",
                "Time from receiving a request to the first byte of the engine's answer.",
                ["model"],
                buckets=_LATENCY_BUCKETS,
                registry=r,
            )
        )
        self.itl = _Children(
            Histogram(
                "pilothouse_inter_token_latency_seconds",
                "Time between successive streamed chunks.",
                ["model"],
                buckets=_ITL_BUCKETS,
                registry=r,
            )
        )
        self.e2e = _Children(
            Histogram(
                "pilothouse_e2e_request_latency_seconds",
                "Time from receiving a request to sending its last byte.",
                ["model"],
                buckets=_LATENCY_BUCKETS,
                registry=r,
            )
        )
        self.in_flight = _Children(
            Gauge(
                "pilothouse_endpoint_in_flight_requests",
                "Requests the gateway has in flight on each endpoint.",
                ["endpoint"],
                registry=r,
            )
        )
        self.decision = Histogram(
            "pilothouse_scheduling_decision_seconds",
            "Time the scheduler took to pick an endpoint.",
            buckets=_DECISION_BUCKETS,
            registry=r,
        )
        self.http_refused = _Children(
            Counter(
                "pilothouse_http_refused",
                "Requests refused by the HTTP limits before reaching the gateway's routes "
                "(431: head too large, 408: head or body too slow).",
                ["status"],
                registry=r,
            )
        )
        self.retries = _Children(
            Counter(
                "pilothouse_upstream_retries",
                "Requests retried on another endpoint.",
                ["model"],
                registry=r,
            )
        )
        self.split_requests = _Children(
            Counter(
                "pilothouse_traffic_split_requests",
                "Requests to a traffic split's public name, by the version that got them and "
                "status code (compare versions with the model-labelled latency series).",
                ["public_model", "model", "status"],
                registry=r,
            )
        )
        self.tokens = _Children(
            Counter(
                "pilothouse_tokens",
                "Tokens reported by engines, by model and kind.",
                ["model", "kind"],
                registry=r,
            )
        )
