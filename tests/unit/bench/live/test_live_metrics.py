"""Engine metrics for live runs: counters, cache hit rate, queue ratio; and the recorder."""

from __future__ import annotations

import aiohttp
import pytest

from pilothouse.bench.live.client import RequestOutcome
from pilothouse.bench.live.metrics import (
    EngineCounters,
    QueueSampler,
    cache_hit_rate,
    parse_counters,
)
from pilothouse.bench.live.stats import LiveRecorder

EXPOSITION = """\
# HELP vllm:prefix_cache_queries Prefix cache queries.
# TYPE vllm:prefix_cache_queries counter
vllm:prefix_cache_queries_total{engine="0",model_name="m"} 1000.0
vllm:prefix_cache_queries_total{engine="1",model_name="m"} 500.0
# TYPE vllm:prefix_cache_hits counter
vllm:prefix_cache_hits_total{engine="0",model_name="m"} 600.0
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{engine="0",model_name="m"} 3.0
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="m"} 7.0
"""

OLD_NAMES = """\
# TYPE vllm:gpu_prefix_cache_queries counter
vllm:gpu_prefix_cache_queries_total{model_name="m"} 10.0
# TYPE vllm:gpu_prefix_cache_hits counter
vllm:gpu_prefix_cache_hits_total{model_name="m"} 4.0
"""


def test_parse_counters_sums_label_sets() -> None:
    assert parse_counters(EXPOSITION) == EngineCounters(hits=600.0, queries=1500.0, waiting=3)
    assert parse_counters(OLD_NAMES) == EngineCounters(hits=4.0, queries=10.0, waiting=0)
    assert parse_counters("") == EngineCounters(0.0, 0.0, 0)


def test_cache_hit_rate_is_hit_deltas_over_query_deltas() -> None:
    before = [EngineCounters(10, 100, 0), EngineCounters(0, 0, 0)]
    after = [EngineCounters(60, 200, 0), EngineCounters(30, 100, 0)]
    assert cache_hit_rate(before, after) == pytest.approx(80 / 200)
    assert cache_hit_rate(before, [after[0], None]) is None  # one engine unreadable
    assert cache_hit_rate([], []) is None  # no metrics URL
    assert cache_hit_rate(before, before) is None  # nothing was queried


async def test_queue_ratio_counts_only_busy_samples_before_the_last_arrival() -> None:
    async with aiohttp.ClientSession() as session:
        sampler = QueueSampler(session, ["a", "b"], 0.5)
        sampler.queues = [[], []]
        sampler.record(0.0, [EngineCounters(0, 0, 1), EngineCounters(0, 0, 0)], counting=True)
        assert sampler.worst_ratio == 1.0  # mean 0.5 < 1: skipped
        sampler.record(0.5, [EngineCounters(0, 0, 6), EngineCounters(0, 0, 2)], counting=True)
        assert sampler.worst_ratio == pytest.approx(1.5)
        sampler.record(1.0, [EngineCounters(0, 0, 9), None], counting=False)
        assert sampler.worst_ratio == pytest.approx(1.5)  # the drain is not counted
    assert sampler.times == [0.0, 0.5, 1.0]
    assert sampler.queues == [[1, 6, 9], [0, 2, 0]]


def test_recorder_reports_in_simulated_seconds() -> None:
    recorder = LiveRecorder(scale=2.0)
    recorder.add(RequestOutcome("a", 10.0, 10.5, None, 10.1, (0.1, 0.1), 3))
    recorder.add(RequestOutcome("b", 10.2, 11.0, None, 10.4, (0.2, 0.2), 3))
    recorder.add(RequestOutcome("c", 10.3, 10.4, "HTTP 500: boom"))
    recorder.unsent()
    metrics = recorder.metrics(0.25, None)
    assert (metrics.completed, metrics.failed) == (2, 2)
    assert metrics.ttft_p50_s == pytest.approx(0.3)  # (0.1 + 0.2) / 2 wall s, x 2
    assert metrics.itl_p50_s == pytest.approx(0.2)
    assert metrics.e2e_p90_s == pytest.approx(2 * (0.5 + 0.9 * 0.3))
    assert metrics.output_tok_s == pytest.approx(6 / (1.0 * 2.0))
    assert (metrics.cache_hit_rate, metrics.max_queue_ratio) == (0.25, 0.0)
    assert recorder.first_error == "HTTP 500: boom"
    assert recorder.done == 4
