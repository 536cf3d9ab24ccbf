"""The gateway's lock-free metrics export exactly what prometheus_client's classes would."""

from __future__ import annotations

import re

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from pilothouse.gateway.metrics import GatewayMetrics

_CREATED = re.compile(r"(_created(?:\{[^}]*\})?) [0-9.e+]+")


def _reference() -> tuple[CollectorRegistry, dict[str, Counter | Gauge | Histogram]]:
    """The same series as prometheus_client objects: the oracle."""
    r = CollectorRegistry()
    new = GatewayMetrics()
    made: dict[str, Counter | Gauge | Histogram] = {}
    for family in new._families:
        kind = {"counter": Counter, "gauge": Gauge, "histogram": Histogram}[family.kind]
        extra = {"buckets": family._bounds} if family.kind == "histogram" else {}
        made[family.name] = kind(family.name, family.doc, family.labelnames, registry=r, **extra)
    return r, made


def _text(registry: CollectorRegistry) -> str:
    return _CREATED.sub(r"\1 T", generate_latest(registry).decode())


@pytest.mark.parametrize("value", [0.0, 0.001, 0.005, 0.0050001, 2.5, 119.9, 120.0, 1e9])
def test_metrics_match_prometheus_client_exposition(value: float) -> None:
    reference, made = _reference()
    metrics = GatewayMetrics()
    metrics.requests.labels("m", "/v1/chat/completions", "200").inc()
    made["pilothouse_requests"].labels("m", "/v1/chat/completions", "200").inc()  # type: ignore[union-attr]
    metrics.tokens.labels("m", "prompt").inc(12)
    made["pilothouse_tokens"].labels("m", "prompt").inc(12)  # type: ignore[union-attr]
    for name in ("ttft", "e2e", "itl"):
        getattr(metrics, name).labels("m").observe(value)
    for name in ("time_to_first_token", "e2e_request_latency", "inter_token_latency"):
        made[f"pilothouse_{name}_seconds"].labels("m").observe(value)  # type: ignore[union-attr]
    metrics.decision.observe(value)
    made["pilothouse_scheduling_decision_seconds"].observe(value)  # type: ignore[union-attr]
    gauge = metrics.in_flight.labels("e1")
    gauge.inc()
    gauge.inc()
    gauge.dec()
    ref_gauge = made["pilothouse_endpoint_in_flight_requests"].labels("e1")
    ref_gauge.inc()  # type: ignore[union-attr]
    ref_gauge.inc()  # type: ignore[union-attr]
    ref_gauge.dec()  # type: ignore[union-attr]
    assert _text(metrics.registry) == _text(reference)


def test_counters_refuse_to_go_down_and_labels_are_checked() -> None:
    metrics = GatewayMetrics()
    with pytest.raises(ValueError, match="only go up"):
        metrics.retries.labels("m").inc(-1)
    with pytest.raises(ValueError, match="takes labels"):
        metrics.requests.labels("m")
    assert (
        metrics.registry.get_sample_value("pilothouse_upstream_retries_total", {"model": "m"}) == 0
    )
