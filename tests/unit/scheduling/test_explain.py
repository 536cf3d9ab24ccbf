"""explain(): each scorer's value for the pick and the runner-up, as the cycle saw them."""

from __future__ import annotations

from pathlib import Path

import pytest

from pilothouse.clock import ManualClock
from pilothouse.scheduling.config import builtin_config, load_scheduler_config
from pilothouse.scheduling.explain import explain, runner_up
from pilothouse.scheduling.scheduler import Scheduler, build_scheduler
from pilothouse.scheduling.testing import endpoint, request
from pilothouse.scheduling.types import ProfileResult

BLEND = """
plugins:
  - type: ready
  - type: least-requests
  - type: kv-cache-usage
  - type: max-score
profiles:
  - name: blend
    plugins:
      - {ref: ready}
      - {ref: least-requests, weight: 2}
      - {ref: kv-cache-usage, weight: 1}
      - {ref: max-score}
"""


def _blend(tmp_path: Path) -> Scheduler:
    path = tmp_path / "blend.yaml"
    path.write_text(BLEND)
    return build_scheduler(load_scheduler_config(path), ManualClock(), seed=0)


def test_explained_matches_the_totals_of_the_cycle(tmp_path: Path) -> None:
    scheduler = _blend(tmp_path)
    eps = [
        endpoint("a", in_flight=4, kv_cache_usage=0.9),
        endpoint("b", in_flight=0, kv_cache_usage=0.5),
        endpoint("c", in_flight=2, kv_cache_usage=0.1),
        endpoint("down", ready=False),
    ]
    result, why = scheduler.explained(request("hi"), eps)
    profile = result.profiles["blend"]
    picked = profile.targets[0].name
    second = runner_up(profile)
    assert second is not None
    assert set(why.scores) == {picked, second[0]}  # only the two asked about
    assert why.weights == {"least-requests": 2.0, "kv-cache-usage": 1.0}
    for name in (picked, second[0]):
        values = why.scores[name]
        total = sum(why.weights[s] * v for s, v in values.items())
        assert total == pytest.approx(profile.scores[name])
        assert all(0.0 <= v <= 1.0 for v in values.values())
    assert result.target.name == scheduler.schedule(request("hi"), eps).target.name


def test_explain_runs_before_post_schedule_hooks() -> None:
    """The prefix index learns the prompt after the cycle: the explanation must not."""
    scheduler = build_scheduler(builtin_config("default"), ManualClock(), seed=0)
    prompt = "a long shared prefix " * 60
    eps = [endpoint("a"), endpoint("b")]
    _, first = scheduler.explained(request(prompt), eps)
    _, again = scheduler.explained(request(prompt), eps)
    assert set(first.prefix_match.values()) == {0.0}
    assert max(again.prefix_match.values()) == 1.0


def test_explain_filters_as_the_profile_does() -> None:
    scheduler = build_scheduler(builtin_config("least-requests"), ManualClock(), seed=0)
    profile = next(iter(scheduler.profiles.values()))
    eps = [endpoint("a", in_flight=3), endpoint("b", ready=False)]
    why = explain(profile, 0.0, request("x"), eps, {"a", "b"})
    assert set(why.scores) == {"a"}  # b is not ready: the profile never scored it


def test_runner_up_is_the_best_other_total() -> None:
    a, b = endpoint("a"), endpoint("b")
    result = ProfileResult(targets=(b,), scores={"a": 0.5, "b": 0.4, "c": 0.7})
    assert runner_up(result) == ("c", 0.7)
    assert runner_up(ProfileResult(targets=(a,), scores={"a": 1.0})) is None
    assert runner_up(ProfileResult(targets=())) is None
