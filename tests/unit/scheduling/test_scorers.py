"""Table-driven tests of the load scorers."""

from __future__ import annotations

import pytest

from pilothouse.scheduling.interfaces import Scorer
from pilothouse.scheduling.plugins.scorers.kv_cache_usage import KvCacheUsageScorer
from pilothouse.scheduling.plugins.scorers.least_requests import LeastRequestsScorer
from pilothouse.scheduling.plugins.scorers.queue_depth import QueueDepthScorer
from pilothouse.scheduling.testing import endpoint, run_scorer
from pilothouse.scheduling.types import Endpoint


def _loads(*in_flight: int) -> list[Endpoint]:
    return [endpoint(f"e{i}", in_flight=n) for i, n in enumerate(in_flight)]


def _queues(*waiting: int) -> list[Endpoint]:
    return [endpoint(f"e{i}", waiting=n) for i, n in enumerate(waiting)]


def _kv(*usage: float) -> list[Endpoint]:
    return [endpoint(f"e{i}", kv_cache_usage=u) for i, u in enumerate(usage)]


CASES = [
    pytest.param(LeastRequestsScorer("lr"), _loads(0, 5, 10), [1.0, 0.5, 0.0], id="lr-spread"),
    pytest.param(LeastRequestsScorer("lr"), _loads(3, 3, 3), [1.0, 1.0, 1.0], id="lr-equal"),
    pytest.param(LeastRequestsScorer("lr"), _loads(4, 2), [0.0, 1.0], id="lr-two"),
    pytest.param(LeastRequestsScorer("lr"), _loads(7), [1.0], id="lr-single"),
    pytest.param(
        LeastRequestsScorer("lr"),
        [endpoint("a", in_flight=1, waiting=100), endpoint("b", in_flight=3)],
        [1.0, 0.0],
        id="lr-ignores-engine-queue",
    ),
    pytest.param(QueueDepthScorer("q"), _queues(0, 2, 8), [1.0, 0.75, 0.0], id="queue-spread"),
    pytest.param(QueueDepthScorer("q"), _queues(0, 0), [1.0, 1.0], id="queue-equal"),
    pytest.param(
        QueueDepthScorer("q"),
        [endpoint("a", waiting=1, in_flight=100), endpoint("b", waiting=3)],
        [1.0, 0.0],
        id="queue-ignores-in-flight",
    ),
    pytest.param(KvCacheUsageScorer("kv"), _kv(0.0, 0.25, 1.0), [1.0, 0.75, 0.0], id="kv"),
    pytest.param(KvCacheUsageScorer("kv"), _kv(0.5, 0.5), [0.5, 0.5], id="kv-not-normalised"),
]


@pytest.mark.parametrize(("scorer", "endpoints", "expected"), CASES)
def test_scorer(scorer: Scorer, endpoints: list[Endpoint], expected: list[float]) -> None:
    assert run_scorer(scorer, endpoints) == pytest.approx(expected)
