"""The router's estimate of when each endpoint's prefill queue drains (PrefillDrain)."""

from __future__ import annotations

import pytest

from pilothouse.routing.prefill_drain import PrefillDrain
from pilothouse.scheduling.latency import LatencyFeatures
from pilothouse.scheduling.types import Endpoint


class PerToken:
    """An estimator: a millisecond per uncached token, ``None`` for an empty prompt (cold);
    it records what it was asked."""

    def __init__(self) -> None:
        self.asked: list[LatencyFeatures] = []

    def predict_ttft(self, endpoint: str, features: LatencyFeatures) -> float | None:
        self.asked.append(features)
        return features.uncached_tokens / 1000 or None


def _f(tokens: int, backlog: int = 0, awaiting: int = 0, wait_s: float = 0.0) -> LatencyFeatures:
    return LatencyFeatures(
        uncached_tokens=tokens,
        prompt_tokens=tokens,
        backlog_tokens=backlog,
        awaiting=awaiting,
        wait_s=wait_s,
    )


def test_the_queue_drains_at_the_sum_of_the_service_times_and_re_anchors_at_first_tokens() -> None:
    drain = PrefillDrain(PerToken())
    assert drain.wait_s("e", 0.0) == 0.0
    drain.placed("a", "e", _f(1000), 0.0)  # 1 s of work: drains at 1.0
    drain.placed("b", "e", _f(2000), 0.5)  # queued behind it: drains at 3.0
    assert drain.wait_s("e", 1.0) == pytest.approx(2.0)
    drain.done("a", "e", 1.2)  # a ran late: b's 2 s start now
    assert drain.wait_s("e", 2.0) == pytest.approx(1.2)
    assert drain.wait_s("other", 2.0) == 0.0
    drain.done("b", "e", 3.0)
    assert drain.wait_s("e", 3.0) == 0.0
    drain.placed("c", "e", _f(500), 10.0)  # an idle queue starts now, not at 3.0
    assert drain.wait_s("e", 10.0) == pytest.approx(0.5)
    assert drain.wait_s("e", 11.0) == 0.0  # overdue: never negative


def test_a_request_is_predicted_alone_and_a_cold_estimator_queues_nothing() -> None:
    estimator = PerToken()
    drain = PrefillDrain(estimator)
    drain.placed("a", "e", _f(800, backlog=5000, awaiting=2, wait_s=3.0), 0.0)
    assert estimator.asked == [_f(800)]  # its own service: nothing ahead of it
    drain.placed("cold", "e", _f(0), 0.0)
    drain.done("unknown", "e", 0.1)  # any first token re-anchors on what is pending
    assert drain.wait_s("e", 0.1) == pytest.approx(0.8)
    drain.done("a", "e", 0.5)
    drain.done("cold", "e", 0.6)  # never queued: nothing to remove
    assert drain.wait_s("e", 0.6) == 0.0


def test_annotate_copies_only_the_endpoints_with_a_wait() -> None:
    drain = PrefillDrain(PerToken())
    idle, busy = Endpoint("idle", "a", "m"), Endpoint("busy", "b", "m")
    assert drain.annotate([idle, busy], 0.0) == [idle, busy]
    drain.placed("a", "busy", _f(1500), 0.0)
    annotated = drain.annotate([idle, busy], 0.5)
    assert annotated[0] is idle
    assert annotated[1] == busy.evolve(prefill_wait_s=pytest.approx(1.0))
