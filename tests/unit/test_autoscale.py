"""The autoscaling decision, table by table, in virtual time."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from pilothouse.autoscale import (
    AutoscaleState,
    MetricsSample,
    MetricsWindow,
    autoscale,
)
from pilothouse.config.autoscaling import AutoscalingSpec


def policy(**fields: object) -> AutoscalingSpec:
    base: dict[str, object] = {
        "min_replicas": 1,
        "max_replicas": 8,
        "metric": "queue_depth",
        "target": 4,
        "window_s": 1,
        "scale_down_stabilization_s": 0,
    }
    return AutoscalingSpec.model_validate({**base, **fields})


def window(now: float, **sample: object) -> MetricsWindow:
    fields: dict[str, object] = {"at": now, "ready": 1, "in_flight": 0, **sample}
    return MetricsWindow((MetricsSample(**fields),))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("fields", "current", "sample", "expected"),
    [
        ({}, 1, {"in_flight": 12}, 3),  # 12 outstanding / 4 per replica
        ({}, 1, {"in_flight": 2, "held": 10}, 3),  # held requests count as load
        ({}, 3, {"in_flight": 12}, 3),  # at target
        ({"tolerance": 0.2}, 3, {"in_flight": 14}, 3),  # 14 / 12 is within 20 %
        ({}, 3, {"in_flight": 14}, 4),  # ... but not within the default 10 %
        ({}, 4, {"in_flight": 1}, 1),  # no down window: down at once
        ({}, 1, {"in_flight": 100}, 8),  # clamped to max_replicas
        ({"min_replicas": 2}, 4, {"in_flight": 0}, 2),  # clamped to min_replicas
        ({"min_replicas": 0}, 3, {"in_flight": 0}, 1),  # min 0 is reached by idling only
        ({"metric": "kv_cache_usage", "target": 0.5}, 2, {"ready": 2, "kv_cache_usage": 0.9}, 4),
        ({"metric": "kv_cache_usage", "target": 0.5}, 4, {"ready": 4, "kv_cache_usage": 0.1}, 1),
        ({"metric": "kv_cache_usage", "target": 0.5}, 3, {"ready": 2, "kv_cache_usage": 0.6}, 3),
        ({"metric": "kv_cache_usage", "target": 0.5}, 3, {"ready": 2, "kv_cache_usage": 0.1}, 3),
        ({"metric": "kv_cache_usage", "target": 0.5}, 3, {"ready": 2, "kv_cache_usage": 0.9}, 4),
        ({"metric": "ttft", "target": 1.0}, 2, {"ready": 2, "ttft_p90_s": 2.6}, 6),
        ({"metric": "ttft", "target": 1.0}, 2, {"ready": 2}, 2),  # no TTFT seen: keep
    ],
    ids=[
        "queue-up",
        "held-is-load",
        "at-target",
        "tolerance-holds",
        "tolerance-exceeded",
        "down-at-once",
        "max",
        "min",
        "min-zero-needs-idle",
        "kv-up",
        "kv-down",
        "kv-starting-replicas-count",
        "kv-no-scale-down-while-starting",
        "kv-ready-ones-ask-for-more",
        "ttft-up",
        "ttft-no-data",
    ],
)
def test_one_decision(
    fields: dict[str, object], current: int, sample: dict[str, object], expected: int
) -> None:
    decision = autoscale(window(10.0, **sample), policy(**fields), current, now=10.0)
    assert decision.target == expected


def run(
    spec: AutoscalingSpec,
    load: Sequence[tuple[float, int]],
    start: int,
    *,
    until: float,
    step: float = 1.0,
) -> list[tuple[float, int]]:
    """Drive the autoscaler every ``step`` seconds over a load profile; the target timeline.

    ``load`` is (from time, outstanding requests) pairs; requests arrive while it is > 0.
    """
    state, current, now = AutoscaleState(), start, 0.0
    samples: list[MetricsSample] = []
    last_request: float | None = None
    timeline = []
    while now <= until:
        outstanding = [n for t, n in load if t <= now][-1]
        if outstanding:
            last_request = now
        samples.append(MetricsSample(now, current, outstanding))
        win = MetricsWindow(tuple(samples[-30:]), last_request)
        decision = autoscale(win, spec, current, now, state)
        state, current = decision.state, decision.target
        timeline.append((now, current))
        now += step
    return timeline


def at(timeline: list[tuple[float, int]], when: float) -> int:
    return [n for t, n in timeline if t <= when][-1]


def test_scales_up_fast_and_down_only_after_the_down_window() -> None:
    spec = policy(scale_down_stabilization_s=30, window_s=2)
    timeline = run(spec, [(0, 4), (10, 16), (40, 4)], start=1, until=100)
    assert at(timeline, 9) == 1
    assert at(timeline, 11) == 3  # the 2 s window averages the step in
    assert at(timeline, 12) == 4
    assert at(timeline, 69) == 4  # load fell at 40: still inside the 30 s window
    assert at(timeline, 73) == 1


def test_a_short_dip_does_not_scale_down() -> None:
    spec = policy(scale_down_stabilization_s=30, window_s=1)
    timeline = run(spec, [(0, 16), (20, 0), (25, 16)], start=4, until=60)
    assert {n for _, n in timeline} == {4}


def test_up_window_ignores_a_short_spike() -> None:
    spec = policy(scale_up_stabilization_s=5, window_s=1)
    timeline = run(spec, [(0, 4), (10, 32), (12, 4)], start=1, until=30)
    assert {n for _, n in timeline} == {1}
    timeline = run(spec, [(0, 4), (10, 32)], start=1, until=30)
    assert at(timeline, 14) == 1
    assert at(timeline, 16) == 8


def test_no_scale_down_before_the_history_covers_the_window() -> None:
    spec = policy(scale_down_stabilization_s=30)
    decision = autoscale(window(100.0, ready=4, in_flight=0), spec, 4, now=100.0)
    assert decision.target == 4
    assert "held" in decision.reason


def test_scale_to_zero_after_the_idle_timeout_and_back_on_the_first_request() -> None:
    spec = policy(min_replicas=0, idle_timeout_s=30, scale_down_stabilization_s=0)
    timeline = run(spec, [(0, 2), (10, 0)], start=1, until=60)
    assert at(timeline, 38) == 1  # the last request was seen at 9
    assert at(timeline, 39) == 0
    assert at(timeline, 60) == 0
    held = MetricsWindow((MetricsSample(61.0, 0, 0, held=1),), last_request_at=61.0)
    assert autoscale(held, spec, 0, now=61.0).target == 1


@pytest.mark.parametrize(("held", "expected"), [(0, 0), (1, 1), (9, 3), (400, 8)])
def test_from_zero_ignores_windows_and_sizes_for_the_held_requests(
    held: int, expected: int
) -> None:
    spec = policy(min_replicas=0, scale_up_stabilization_s=600)
    win = MetricsWindow((MetricsSample(5.0, 0, 0, held=held),))
    assert autoscale(win, spec, 0, now=5.0).target == expected


def test_idle_timer_starts_at_the_first_decision_when_nothing_was_ever_seen() -> None:
    spec = policy(min_replicas=0, idle_timeout_s=10)
    state = autoscale(MetricsWindow(), spec, 1, now=0.0).state
    assert autoscale(MetricsWindow(), spec, 1, now=9.0, state=state).target == 1
    assert autoscale(MetricsWindow(), spec, 1, now=10.0, state=state).target == 0


def test_work_in_flight_prevents_scale_to_zero() -> None:
    spec = policy(min_replicas=0, idle_timeout_s=10)
    win = MetricsWindow((MetricsSample(100.0, 1, 1),), last_request_at=0.0)
    assert autoscale(win, spec, 1, now=100.0).target == 1
