"""Table-driven tests of the ``session-affinity`` scorer."""

from __future__ import annotations

import pytest

from pilothouse.clock import ManualClock
from pilothouse.errors import ConfigError
from pilothouse.scheduling.config import load_scheduler_config
from pilothouse.scheduling.context import PluginContext
from pilothouse.scheduling.interfaces import CycleState
from pilothouse.scheduling.plugins.scorers.session_affinity import SessionAffinityScorer
from pilothouse.scheduling.scheduler import Scheduler, build_scheduler
from pilothouse.scheduling.testing import endpoint
from pilothouse.scheduling.types import (
    Endpoint,
    ProfileResult,
    SchedulingRequest,
    SchedulingResult,
)

POOL = [endpoint("a"), endpoint("b"), endpoint("c")]


def _request(session: str | None, request_id: str = "r") -> SchedulingRequest:
    return SchedulingRequest(request_id=request_id, model="m", session_id=session)


def _served(scorer: SessionAffinityScorer, session: str, target: str, now: float) -> None:
    result = SchedulingResult("p", {"p": ProfileResult(targets=(endpoint(target),))})
    scorer.post_schedule(CycleState(now), _request(session), result)


@pytest.mark.parametrize(
    ("history", "session", "now", "candidates", "expected"),
    [
        pytest.param([], None, 0.0, POOL, [0.0, 0.0, 0.0], id="no-session"),
        pytest.param([], "s1", 0.0, POOL, [0.0, 0.0, 0.0], id="unknown-session"),
        pytest.param([("s1", "b", 0.0)], "s1", 1.0, POOL, [0.0, 1.0, 0.0], id="home"),
        pytest.param([("s1", "b", 0.0)], "s2", 1.0, POOL, [0.0, 0.0, 0.0], id="other-session"),
        pytest.param(
            [("s1", "b", 0.0), ("s1", "c", 5.0)], "s1", 6.0, POOL, [0.0, 0.0, 1.0], id="moved"
        ),
        pytest.param([("s1", "b", 0.0)], "s1", 10.0, POOL, [0.0, 1.0, 0.0], id="at-timeout"),
        pytest.param([("s1", "b", 0.0)], "s1", 10.5, POOL, [0.0, 0.0, 0.0], id="idle-expired"),
        pytest.param([("s1", "b", 0.0)], "s1", 1.0, [POOL[0], POOL[2]], [0.0, 0.0], id="home-gone"),
    ],
)
def test_scores(
    history: list[tuple[str, str, float]],
    session: str | None,
    now: float,
    candidates: list[Endpoint],
    expected: list[float],
) -> None:
    scorer = SessionAffinityScorer("s", idle_timeout_s=10.0)
    for sid, target, at in history:
        _served(scorer, sid, target, at)
    assert list(scorer.score(CycleState(now), _request(session), candidates)) == expected


def test_lru_bound_forgets_the_least_recently_used_session() -> None:
    scorer = SessionAffinityScorer("s", max_sessions=2)
    _served(scorer, "s1", "a", 0.0)
    _served(scorer, "s2", "b", 1.0)
    _served(scorer, "s1", "a", 2.0)  # s1 used again: s2 is now the oldest
    _served(scorer, "s3", "c", 3.0)
    assert len(scorer) == 2
    assert scorer.home("s2", 3.0) is None
    assert (scorer.home("s1", 3.0), scorer.home("s3", 3.0)) == ("a", "c")


def test_expired_session_is_dropped() -> None:
    scorer = SessionAffinityScorer("s", idle_timeout_s=1.0)
    _served(scorer, "s1", "a", 0.0)
    assert scorer.home("s1", 2.0) is None
    assert len(scorer) == 0


def test_requests_without_session_are_not_remembered() -> None:
    scorer = SessionAffinityScorer("s")
    result = SchedulingResult("p", {"p": ProfileResult(targets=(endpoint("a"),))})
    scorer.post_schedule(CycleState(0.0), _request(None), result)
    assert len(scorer) == 0


CONFIG = {
    "plugins": [
        {"type": "ready"},
        {"type": "session-affinity", "parameters": {"idle_timeout_s": 60}},
        {"type": "least-requests"},
        {"type": "max-score"},
    ],
    "profiles": [
        {
            "name": "p",
            "plugins": [
                {"ref": "ready"},
                {"ref": "session-affinity", "weight": 3},
                {"ref": "least-requests"},
                {"ref": "max-score"},
            ],
        }
    ],
}


def _scheduler(clock: ManualClock) -> Scheduler:
    return build_scheduler(load_scheduler_config(CONFIG), clock, seed=0)


def test_a_session_sticks_to_its_replica_under_moderate_load() -> None:
    scheduler = _scheduler(ManualClock())
    home = scheduler.schedule(_request("chat-1", "r0"), POOL).target.name
    busier = [e.evolve(in_flight=5) if e.name == home else e for e in POOL]
    picks = {scheduler.schedule(_request("chat-1", f"r{i}"), busier).target.name for i in range(5)}
    assert picks == {home}
    other = scheduler.schedule(_request("chat-2", "x"), busier).target.name
    assert other != home  # a new session goes where load is lowest


def test_a_session_rehomes_when_its_replica_disappears() -> None:
    clock = ManualClock()
    scheduler = _scheduler(clock)
    home = scheduler.schedule(_request("chat-1", "r0"), POOL).target.name
    survivors = [e for e in POOL if e.name != home]
    new_home = scheduler.schedule(_request("chat-1", "r1"), survivors).target.name
    assert new_home != home
    clock.advance(1.0)
    busier = [e.evolve(in_flight=2) if e.name == new_home else e for e in POOL]
    assert scheduler.schedule(_request("chat-1", "r2"), busier).target.name == new_home


def test_the_user_field_is_a_session() -> None:
    scheduler = _scheduler(ManualClock())
    user = SchedulingRequest(request_id="u", model="m", session_id="alice")
    home = scheduler.schedule(user, POOL).target.name
    busier = [e.evolve(in_flight=1) if e.name == home else e for e in POOL]
    assert scheduler.schedule(user, busier).target.name == home


@pytest.mark.parametrize(
    ("parameters", "path"),
    [
        pytest.param({"max_sessions": 0}, "max_sessions", id="zero-sessions"),
        pytest.param({"idle_timeout_s": 0}, "idle_timeout_s", id="zero-timeout"),
        pytest.param({"idle_timeout_s": "1"}, "idle_timeout_s", id="string"),
        pytest.param({"ttl": 1}, "ttl", id="unknown"),
    ],
)
def test_bad_parameters_name_the_field(parameters: dict[str, object], path: str) -> None:
    with pytest.raises(ConfigError) as info:
        SessionAffinityScorer.create("s", parameters, PluginContext(ManualClock()))
    assert info.value.path == path
