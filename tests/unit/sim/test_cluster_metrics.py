"""Per-run metrics of the cluster simulator and the capacity estimate behind the QPS sweep."""

from __future__ import annotations

from types import SimpleNamespace
from typing import cast

import pytest

from pilothouse.sim import get_preset
from pilothouse.sim.capacity import default_qps_sweep, replica_capacity_qps
from pilothouse.sim.recorder import RunRecorder, percentile, weighted_median
from pilothouse.sim.replica import SimReplica
from pilothouse.sim.types import FinishedRequest


@pytest.mark.parametrize(
    ("values", "q", "expected"),
    [
        pytest.param([], 50, 0.0, id="empty"),
        pytest.param([3.0], 99, 3.0, id="one"),
        pytest.param([1.0, 2.0, 3.0, 4.0], 50, 2.5, id="interpolated"),
        pytest.param([0.0, 10.0], 90, 9.0, id="p90"),
    ],
)
def test_percentile(values: list[float], q: float, expected: float) -> None:
    assert percentile(values, q) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("values", "weights", "expected"),
    [
        pytest.param([], [], 0.0, id="empty"),
        pytest.param([0.05, 0.01], [1, 1], 0.01, id="lower-half"),
        pytest.param([0.01, 0.05], [1, 3], 0.05, id="weighted-up"),
        pytest.param([0.03, 0.01, 0.02], [2, 2, 2], 0.02, id="unsorted"),
    ],
)
def test_weighted_median(values: list[float], weights: list[int], expected: float) -> None:
    assert weighted_median(values, weights) == expected


def _replicas(*waiting: int) -> list[SimReplica]:
    fakes = [SimpleNamespace(engine=SimpleNamespace(num_waiting=w)) for w in waiting]
    return cast("list[SimReplica]", fakes)


@pytest.mark.parametrize(
    ("samples", "expected"),
    [
        pytest.param([(0, 0, 0, 0)], 1.0, id="never-queued"),
        pytest.param([(0, 0, 0, 3)], 1.0, id="mean-below-one-skipped"),
        pytest.param([(4, 0, 0, 0)], 4.0, id="all-on-one"),
        pytest.param([(2, 2, 2, 2), (6, 1, 1, 0)], 3.0, id="worst-moment"),
    ],
)
def test_max_queue_ratio(samples: list[tuple[int, ...]], expected: float) -> None:
    recorder = RunRecorder(4)
    for t, waiting in enumerate(samples):
        recorder.sample_queues(float(t), _replicas(*waiting))
    result = recorder.result(10.0, 0)
    assert result.metrics.max_queue_ratio == expected
    assert result.queue_trace.queues[0] == tuple(s[0] for s in samples)


def test_the_drain_after_the_last_arrival_is_plotted_but_not_rated() -> None:
    recorder = RunRecorder(2)
    recorder.sample_queues(0.0, _replicas(2, 2))
    recorder.sample_queues(1.0, _replicas(9, 0), in_ratio=False)
    result = recorder.result(2.0, 0)
    assert result.metrics.max_queue_ratio == 1.0
    assert result.queue_trace.queues == ((2, 9), (2, 0))


def _finished(rid: str, arrival: float, first: float, end: float, cached: int) -> FinishedRequest:
    return FinishedRequest(rid, "length", 100, 10, cached, arrival, arrival, first, end, 0)


def test_throughput_and_cache_hit_rate() -> None:
    progress: list[int] = []
    recorder = RunRecorder(1, progress.append)
    recorder.arrival(1.0)
    recorder.finished(_finished("a", 1.0, 1.5, 3.0, 50))
    recorder.finished(_finished("b", 2.0, 2.2, 5.0, 0))
    recorder.failed()
    metrics = recorder.result(5.0, 3).metrics
    assert (metrics.completed, metrics.failed) == (2, 1)
    assert metrics.output_tok_s == pytest.approx(20 / 4.0)
    assert metrics.cache_hit_rate == pytest.approx(0.25)
    assert metrics.ttft_p50_s == pytest.approx(0.35)
    assert sum(progress) == 3


QWEN = get_preset("qwen3-32b-tp2-h100")


@pytest.mark.parametrize(
    ("cached", "more_than"),
    [pytest.param(0.0, 0.5, id="no-cache"), pytest.param(0.83, 1.0, id="system-prompt-cached")],
)
def test_capacity_estimate_is_in_a_plausible_range(cached: float, more_than: float) -> None:
    # llm-d's b2b shape on Qwen3-32B TP2: knees between ~5 and ~15 QPS for 8 pods
    per_replica = replica_capacity_qps(QWEN, 7200, 1000, cached)
    assert more_than < per_replica < 3.0


def test_default_sweep_spans_no_cache_to_past_perfect_cache() -> None:
    levels = default_qps_sweep(QWEN, 8, 7200, 1000, 1.0)
    assert list(levels) == sorted(levels)
    assert 4 <= len(levels) <= 6
    assert levels[0] < 8 * replica_capacity_qps(QWEN, 7200, 1000) / 2
    assert levels[-1] > 8 * replica_capacity_qps(QWEN, 7200, 1000, 1.0)


def test_capacity_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="positive"):
        replica_capacity_qps(QWEN, 0, 10)
