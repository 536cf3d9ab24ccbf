"""The console's decision ring and the fleet/routing views' data functions."""

from __future__ import annotations

from pilothouse.scheduling.types import (
    Endpoint,
    EndpointMetrics,
    ProfileResult,
    SchedulingRequest,
    SchedulingResult,
)
from pilothouse.ui.decisions import DecisionLog, scheduled_of
from pilothouse.ui.fleet import decision_rows, fleet_view

A = Endpoint(name="a", address="10.0.0.1:8000", model="m")
B = Endpoint(name="b", address="10.0.0.2:8000", model="m")
C = Endpoint(name="c", address="10.0.0.3:8000", model="m")


def _result(scores: dict[str, float], uncached: int | None = None) -> SchedulingResult:
    order = sorted((A, B, C), key=lambda e: -scores.get(e.name, -1.0))
    targets = tuple(e for e in order if e.name in scores)
    return SchedulingResult("default", {"default": ProfileResult(targets, scores)}, uncached)


def test_scheduled_names_the_pick_and_the_best_other_as_runner_up() -> None:
    request = SchedulingRequest("r1", "m", prompt_tokens=100, tenant="research", priority=2)
    choice = scheduled_of(request, _result({"a": 0.2, "b": 0.9, "c": 0.5}, uncached=40))
    assert (choice.picked, choice.picked_score) == ("b", 0.9)
    assert (choice.runner_up, choice.runner_up_score) == ("c", 0.5)
    assert (choice.profile, choice.candidates, choice.tenant) == ("default", 3, "research")
    assert (choice.prompt_tokens, choice.uncached_tokens) == (100, 40)


def test_a_single_candidate_has_no_runner_up() -> None:
    choice = scheduled_of(SchedulingRequest("r", "m"), _result({"a": 1.0}))
    assert choice.runner_up is None
    assert "the only candidate" in decision_rows(_finished(choice_of=("r", {"a": 1.0})))[0].why


def _finished(choice_of: tuple[str, dict[str, float]]) -> list:  # type: ignore[type-arg]
    log = DecisionLog(4)
    request_id, scores = choice_of
    log.scheduled(SchedulingRequest(request_id, "m"), _result(scores))
    log.finished(request_id, "m", "/v1/chat/completions", 200, 0.0, "a")
    return log.recent()


def test_the_ring_keeps_the_newest_and_wraps() -> None:
    log = DecisionLog(3)
    for i in range(5):
        log.scheduled(SchedulingRequest(f"r{i}", "m"), _result({"a": 0.5, "b": 0.1}))
        log.finished(f"r{i}", "m", "/v1/chat/completions", 200, 0.0, "a")
    assert [r.request_id for r in log.recent()] == ["r4", "r3", "r2"]
    assert [r.request_id for r in log.recent(2)] == ["r4", "r3"]
    assert log.total == 5


def test_a_refused_request_is_recorded_without_a_choice_and_says_why() -> None:
    log = DecisionLog(2)
    log.finished("x", "m", "/v1/chat/completions", 429, 0.0, None)
    (row,) = decision_rows(log.recent())
    assert row.record.choice is None
    assert "shed" in row.why


def test_choices_of_requests_that_never_end_are_bounded() -> None:
    log = DecisionLog(1)
    for i in range(10):
        log.scheduled(SchedulingRequest(f"r{i}", "m"), _result({"a": 1.0}))
    assert len(log._pending) == 4
    log.finished("r9", "m", "/v1/chat/completions", 200, 0.0, "a")
    assert log.recent()[0].choice is not None


def test_fleet_view_groups_replicas_and_estimates_the_hit_rate_from_recent_picks() -> None:
    log = DecisionLog(8)
    for i, uncached in enumerate((25, 75)):  # 100-token prompts: (75 + 25) / 200 cached
        log.scheduled(
            SchedulingRequest(f"r{i}", "m", prompt_tokens=100), _result({"a": 0.9}, uncached)
        )
        log.finished(f"r{i}", "m", "/v1/chat/completions", 200, 0.0, "a")
    busy = A.evolve(in_flight=3, metrics=EndpointMetrics(waiting=2, running=5, kv_cache_usage=0.4))
    view = fleet_view([B.evolve(ready=False), busy], log.recent(), log.total, None)
    (model,) = view.models
    assert [r.name for r in model.replicas] == ["a", "b"]
    a, b = model.replicas
    assert (a.in_flight, a.waiting, a.running, a.kv_cache_usage) == (3, 2, 5, 0.4)
    assert (a.hit_rate, a.routed) == (0.5, 2)
    assert (b.state, b.hit_rate, b.routed) == ("not ready", None, 0)
    assert (model.ready, view.in_flight, view.requests_total, view.control) == (1, 3, 2, False)


def test_fleet_view_shows_the_control_planes_status_when_there_is_one() -> None:
    status = {
        "targets": {"m": 2},
        "replicas": [{"name": "m-0", "model": "m", "phase": "ready", "restarts": 0}],
        "scaling": [{"at": 1.0, "model": "m", "from": 1, "to": 2, "reason": "queue"}],
    }
    view = fleet_view([A], [], 0, status)
    assert view.control
    assert view.targets == {"m": 2}
    assert view.phases[0]["phase"] == "ready"
    assert view.scaling[0]["to"] == 2
