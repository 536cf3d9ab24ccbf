"""The endpoint picker's own Prometheus metrics, served over HTTP on a port of their own.

Series live in a registry of the picker's own (never the global one). Per-endpoint gauges
are read from the :class:`EndpointPool` at scrape time, so they are exact and disappear
with the endpoint.
"""

from __future__ import annotations

from collections.abc import Iterator

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector

from pilothouse.endpoints.pool import EndpointPool

_DECISION_BUCKETS = (5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2, 0.1)
_SCHEDULING_BUCKETS = (1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 1e-2)
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 120.0)

RESULTS = ("routed", "no_endpoint", "shed", "bad_request", "too_large", "error")


class _PoolCollector(Collector):
    """In-flight counts and readiness of every endpoint, read when scraped."""

    def __init__(self, pool: EndpointPool) -> None:
        self._pool = pool

    def collect(self) -> Iterator[Metric]:
        in_flight = GaugeMetricFamily(
            "pilothouse_epp_endpoint_in_flight_requests",
            "Requests the picker counts in flight on each endpoint.",
            labels=["endpoint", "address"],
        )
        ready = GaugeMetricFamily(
            "pilothouse_epp_endpoint_ready",
            "1 when the endpoint passes its health probe, else 0.",
            labels=["endpoint", "address"],
        )
        for endpoint in self._pool.endpoints():
            labels = [endpoint.name, endpoint.address]
            in_flight.add_metric(labels, endpoint.in_flight)
            ready.add_metric(labels, 1.0 if endpoint.ready else 0.0)
        yield in_flight
        yield ready


class EppMetrics:
    """Every series the picker exports, bound to one registry."""

    def __init__(self, pool: EndpointPool, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "pilothouse_epp_requests",
            "Requests the picker answered, by result (routed, no_endpoint, shed, ...).",
            ["result"],
            registry=r,
        )
        self.decision = Histogram(
            "pilothouse_epp_decision_seconds",
            "From the last request-body chunk to the routing answer: parse and schedule.",
            buckets=_DECISION_BUCKETS,
            registry=r,
        )
        self.scheduling = Histogram(
            "pilothouse_epp_scheduling_seconds",
            "Time the scheduler alone took to pick an endpoint.",
            buckets=_SCHEDULING_BUCKETS,
            registry=r,
        )
        self.streams = Gauge("pilothouse_epp_active_streams", "Open ext_proc streams.", registry=r)
        self.first_byte = Histogram(
            "pilothouse_epp_time_to_first_byte_seconds",
            "From the request headers to the first response-body byte.",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.duration = Histogram(
            "pilothouse_epp_request_duration_seconds",
            "From the request headers to the end of the response.",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.tokens = Counter(
            "pilothouse_epp_tokens",
            "Tokens reported in responses' usage, by kind (prompt, completion).",
            ["kind"],
            registry=r,
        )
        self.rerouted = Counter(
            "pilothouse_epp_served_elsewhere",
            "Responses the data plane reports served by another endpoint than the pick.",
            registry=r,
        )
        for result in RESULTS:
            self.requests.labels(result)
        r.register(_PoolCollector(pool))

    def render(self) -> bytes:
        return generate_latest(self.registry)


async def start_metrics_server(metrics: EppMetrics, host: str, port: int) -> web.AppRunner:
    """Serve ``GET /metrics`` on ``host:port`` (0: a free port; see ``runner.addresses``)."""

    async def scrape(request: web.Request) -> web.Response:
        return web.Response(body=metrics.render(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = web.Application()
    app.router.add_get("/metrics", scrape)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner
