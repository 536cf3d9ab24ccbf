"""The gateway's opt-in event-loop lag probe, and where it tokenizes (``gateway.tokenize``)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from starlette.testclient import TestClient

from pilothouse.clock import ManualClock
from pilothouse.config.fleet import GatewaySpec
from pilothouse.endpoints.pool import EndpointPool
from pilothouse.endpoints.prompt_tokens import fixed_engines
from pilothouse.gateway.app import build_gateway_scheduler, create_app
from pilothouse.gateway.lag_probe import LAG_METRIC, LoopLagProbe
from pilothouse.scheduling.config import builtin_config
from pilothouse.scheduling.plugins.scorers.precise_prefix import PrecisePrefixScorer
from pilothouse.scheduling.scheduler import build_scheduler
from tests.e2e.schedulers import PRECISE_PREFIX


def _count(registry: CollectorRegistry, le: str) -> float:
    value = registry.get_sample_value(f"{LAG_METRIC}_bucket", {"le": le})
    return 0.0 if value is None else value


async def test_each_sleep_overshoot_is_observed() -> None:
    # each 1 ms sleep is seen to last 1, 2.5 and 10.5 ms: lags 0, 1.5 and 9.5 ms
    readings: Iterator[float] = iter([0.0, 0.001, 1.0, 1.0025, 2.0, 2.0105])
    registry = CollectorRegistry()
    probe = LoopLagProbe(registry, 0.001, now=lambda: next(readings, 99.0))
    probe.start()
    for _ in range(1000):  # the probe samples while this coroutine sleeps
        await asyncio.sleep(0.001)
        if (registry.get_sample_value(f"{LAG_METRIC}_count") or 0) >= 3:
            break
    await probe.stop()
    assert _count(registry, "0.0001") == 1  # the on-time sleep
    assert _count(registry, "0.0015") == 2  # ... and 1.5 ms
    assert _count(registry, "0.01") == 3  # ... and 9.5 ms
    assert registry.get_sample_value(f"{LAG_METRIC}_sum") == pytest.approx(0.011)
    await probe.stop()  # twice: harmless


def test_a_non_positive_interval_is_refused() -> None:
    with pytest.raises(ValueError, match="positive"):
        LoopLagProbe(CollectorRegistry(), 0.0)


def _app(**settings: object) -> TestClient:
    spec = GatewaySpec(access_log=False, **settings)  # type: ignore[arg-type]
    clock = ManualClock()
    scheduler = build_scheduler(builtin_config("round-robin"), clock)
    return TestClient(create_app(spec, EndpointPool(), scheduler, clock=clock, monitor=False))


def test_metrics_export_the_lag_only_when_the_probe_is_on() -> None:
    with _app(loop_lag_probe_s=0.001) as client:
        text = client.get("/metrics").text
        assert f"# TYPE {LAG_METRIC} histogram" in text
    with _app() as client:
        assert LAG_METRIC not in client.get("/metrics").text
    assert b"event_loop" not in generate_latest(CollectorRegistry())


@pytest.mark.parametrize(
    ("tokenize", "producer", "inline"), [("before", True, False), ("inline", False, True)]
)
def test_tokenize_inline_is_the_old_path(
    tmp_path: Path, tokenize: str, producer: bool, inline: bool
) -> None:
    config = tmp_path / "sched.yaml"
    config.write_text(PRECISE_PREFIX)
    spec = GatewaySpec(scheduler=str(config), kv_events=True, tokenize=tokenize)  # type: ignore[arg-type]
    scheduler, subscriber, preparer = build_gateway_scheduler(
        spec, ManualClock(), engines=fixed_engines({"sim"}), prepared=True
    )
    assert subscriber is not None
    assert (preparer is not None) is producer
    plugin = scheduler.plugins["precise-prefix"]
    assert isinstance(plugin, PrecisePrefixScorer)
    assert (plugin._tokenizer is not None) is inline  # the decision tokenizes
    if preparer is not None:
        preparer.close()
