"""The cluster simulator: determinism, conservation, routing effects, event handling."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pilothouse.scheduling import resolve_config
from pilothouse.sim.cluster import ClusterSimulator, simulate
from pilothouse.sim.cluster_types import ClusterConfig
from tests.unit.sim.cluster_helpers import (
    PRESET,
    Spy,
    b2b_requests,
    cluster,
    plain_request,
    spying,
    stream,
)


@pytest.mark.parametrize("policy", ["random", "default", "cache-aware-sglang"])
def test_same_seed_gives_identical_results(policy: str) -> None:
    runs = [
        simulate(cluster(seed=7), resolve_config(policy), b2b_requests(20.0, 150)) for _ in range(2)
    ]
    assert runs[0] == runs[1]


def test_the_seed_reaches_the_scheduler() -> None:
    results = {
        simulate(cluster(seed=seed), resolve_config("random"), b2b_requests(20.0, 150)).metrics
        for seed in (1, 2)
    }
    assert len(results) == 2


def test_every_request_completes_and_the_counts_return_to_zero() -> None:
    requests = b2b_requests(30.0, 200)
    simulator = ClusterSimulator(cluster(), resolve_config("least-requests"))
    result = simulator.run(requests)
    assert result.metrics.completed == 200
    assert result.metrics.failed == 0
    assert result.duration_s > requests[-1].arrival_s
    for replica in simulator.replicas:
        assert (replica.in_flight, replica.in_flight_tokens) == (0, 0)
        assert replica.endpoint.in_flight == 0
        assert not replica.engine.has_work


@pytest.mark.parametrize("affine", ["prefix-load", "cache-aware-sglang", "default"])
def test_prefix_aware_routing_hits_the_cache_more_than_round_robin(affine: str) -> None:
    requests = b2b_requests(15.0, 300)
    blind = simulate(cluster(), resolve_config("round-robin"), requests).metrics
    aware = simulate(cluster(), resolve_config(affine), requests).metrics
    assert aware.cache_hit_rate > blind.cache_hit_rate + 0.2
    assert aware.ttft_p50_s < blind.ttft_p50_s


def test_fused_decode_steps_cut_by_arrivals_match_single_iterations() -> None:
    requests = b2b_requests(25.0, 120)
    results = [
        simulate(cluster(max_fused_iterations=fused), resolve_config("round-robin"), requests)
        for fused in (1, 1024)
    ]
    one, fused = results[0].metrics, results[1].metrics
    assert fused.completed == one.completed == 120
    for name in ("ttft_p50_s", "ttft_p99_s", "e2e_p90_s", "output_tok_s"):
        assert getattr(fused, name) == pytest.approx(getattr(one, name), rel=1e-6), name
    # a fused step reports its mean gap; single iterations report each gap
    assert fused.itl_p50_s == pytest.approx(one.itl_p50_s, rel=1e-3)
    assert fused.cache_hit_rate == one.cache_hit_rate
    assert results[1].events < results[0].events


def test_follow_ups_arrive_their_delay_after_the_parent_completes() -> None:
    spy = Spy()
    registry, config = spying(spy)
    parent = plain_request("parent", 1.0, output=20)
    child = plain_request("child", 2.5, after="parent")
    other = plain_request("other", 1.5)
    result = ClusterSimulator(cluster(2), config, registry=registry).run([parent, child, other])
    seen = spy.by_id()
    assert result.metrics.completed == 3
    assert seen["parent"].now == 1.0
    assert seen["other"].now == 1.5
    # the parent needs ~20 decode steps of ~6 ms plus its prefill: well past 1.0 s
    assert seen["child"].now > 2.5 + 1.0 + 0.1


def test_in_flight_counts_are_current_but_engine_metrics_lag_the_scrape() -> None:
    spy = Spy()
    registry, config = spying(spy)
    requests = [plain_request(f"r{i}", i * 0.001, tokens=2048, output=64) for i in range(8)]
    stale = cluster(1, scrape_interval_s=1000.0)
    ClusterSimulator(stale, config, registry=registry).run(requests)
    last = spy.sightings[-1].endpoints[0]
    assert last.in_flight == 7  # the gateway's own count never lags
    assert last.metrics.waiting == 0  # not scraped since the start
    spy.sightings.clear()
    ClusterSimulator(cluster(1, scrape_interval_s=0.0), config, registry=registry).run(requests)
    assert max(s.endpoints[0].metrics.waiting for s in spy.sightings) > 0


def test_a_scrape_reports_the_state_at_its_tick() -> None:
    spy = Spy()
    registry, config = spying(spy)
    requests = [plain_request("a", 0.0, tokens=4096, output=200), plain_request("b", 0.26)]
    config_1 = ClusterConfig(PRESET, 1, scrape_interval_s=0.25)
    ClusterSimulator(config_1, config, registry=registry).run(requests)
    seen = spy.by_id()["b"].endpoints[0]
    assert seen.metrics.updated_at == 0.25
    assert seen.metrics.running == 1


def test_too_long_requests_fail_with_their_follow_ups() -> None:
    tiny = ClusterConfig(PRESET, 2, seed=0)
    too_long = plain_request("big", 0.0, tokens=PRESET.max_model_len)
    requests = [too_long, plain_request("next", 0.1, after="big"), plain_request("ok", 0.2)]
    metrics = simulate(tiny, resolve_config("round-robin"), requests).metrics
    assert (metrics.completed, metrics.failed) == (1, 2)


@pytest.mark.parametrize(
    ("requests", "message"),
    [
        pytest.param(
            [plain_request("a", 2.0), plain_request("b", 1.0)], "sort the workload", id="unsorted"
        ),
        pytest.param(
            [plain_request("a", 0.0), plain_request("b", 0.5, after="ghost")],
            "not pending",
            id="unknown-parent",
        ),
    ],
)
def test_malformed_streams_are_rejected(requests: list, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        simulate(cluster(2), resolve_config("round-robin"), stream(requests))


def test_queue_trace_covers_every_replica() -> None:
    result = simulate(
        cluster(3, queue_sample_s=0.2), resolve_config("random"), b2b_requests(30, 90)
    )
    trace = result.queue_trace
    assert len(trace.queues) == 3
    assert all(len(series) == len(trace.times) for series in trace.queues)
    assert trace.times == tuple(sorted(trace.times))
    assert result.metrics.max_queue_ratio >= 1.0


_SCRIPT = """
import dataclasses, json
from pilothouse.scheduling import resolve_config
from pilothouse.sim.cluster import simulate
from tests.unit.sim.cluster_helpers import b2b_requests, cluster
for policy in ("default", "cache-aware-sglang"):
    metrics = simulate(cluster(seed=1), resolve_config(policy), b2b_requests(20.0, 100)).metrics
    print(json.dumps(dataclasses.astuple(metrics)))
"""


def test_results_do_not_depend_on_the_string_hash_seed() -> None:
    outputs = []
    for hash_seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        done = subprocess.run(
            [sys.executable, "-c", _SCRIPT],
            env=env,
            cwd=Path(__file__).parents[3],
            capture_output=True,
            text=True,
            check=True,
        )
        outputs.append(done.stdout)
    assert outputs[0] == outputs[1]
    assert outputs[0].count("\n") == 2
