"""End-to-end behaviour of the packaged configs on a small pool."""

from __future__ import annotations

from collections import Counter

import pytest

from pilothouse.clock import ManualClock
from pilothouse.scheduling.config import builtin_config
from pilothouse.scheduling.scheduler import Scheduler, build_scheduler
from pilothouse.scheduling.testing import endpoint, request
from pilothouse.scheduling.types import Endpoint, EndpointMetrics

SYSTEM = "You are a meticulous assistant for the ACME support desk. " * 8  # ~470 chars


def _pool(n: int = 4) -> list[Endpoint]:
    return [endpoint(f"e{i}") for i in range(n)]


def _dispatch(scheduler: Scheduler, prompts: list[str], pool: list[Endpoint]) -> list[str]:
    """Schedule prompts concurrently: each pick adds one in-flight request to its target."""
    picks: list[str] = []
    for i, prompt in enumerate(prompts):
        target = scheduler.schedule(request(prompt, request_id=str(i)), pool).target
        picks.append(target.name)
        pool = [e.evolve(in_flight=e.in_flight + 1) if e.name == target.name else e for e in pool]
    return picks


@pytest.mark.parametrize("name", ["default", "prefix-load"])
def test_repeated_prefix_sticks_to_one_endpoint(name: str) -> None:
    scheduler = build_scheduler(builtin_config(name), ManualClock(), seed=0)
    picks = {
        scheduler.schedule(request(SYSTEM + f"question {i}?"), _pool()).target.name
        for i in range(20)
    }
    assert len(picks) == 1


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_two_prefixes_stick_to_their_own_endpoints(seed: int) -> None:
    scheduler = build_scheduler(builtin_config("default"), ManualClock(), seed=seed)
    other = "Translate the following legal contract into plain English, clause by clause. " * 6
    seen: dict[str, set[str]] = {"a": set(), "b": set()}
    for i in range(30):
        pool = _pool()
        prefix, key = (SYSTEM, "a") if i % 2 == 0 else (other, "b")
        target = scheduler.schedule(request(prefix + f"#{i}"), pool).target.name
        seen[key].add(target)
    assert len(seen["a"]) == 1
    assert len(seen["b"]) == 1
    assert seen["a"] != seen["b"]


def test_unrelated_prompts_spread_evenly() -> None:
    scheduler = build_scheduler(builtin_config("default"), ManualClock(), seed=0)
    prompts = [f"{i} unrelated prompt about topic number {i}. " * 6 for i in range(16)]
    counts = Counter(_dispatch(scheduler, prompts, _pool()))
    assert counts == {"e0": 4, "e1": 4, "e2": 4, "e3": 4}


def test_hot_prefix_escapes_a_saturated_endpoint() -> None:
    scheduler = build_scheduler(builtin_config("default"), ManualClock(), seed=0)
    home = scheduler.schedule(request(SYSTEM + "warm-up"), _pool()).target.name
    hot = EndpointMetrics(waiting=6, kv_cache_usage=0.7)
    busy = [e.evolve(in_flight=8, metrics=hot) if e.name == home else e for e in _pool()]
    target = scheduler.schedule(request(SYSTEM + "next"), busy).target.name
    assert target != home


def test_sticky_endpoint_keeps_prefix_under_light_load() -> None:
    scheduler = build_scheduler(builtin_config("default"), ManualClock(), seed=0)
    home = scheduler.schedule(request(SYSTEM + "warm-up"), _pool()).target.name
    # the line is 1.5 x the mean in-flight count + 1: one request against an idle pool stays
    light = [e.evolve(in_flight=1) if e.name == home else e for e in _pool()]
    assert scheduler.schedule(request(SYSTEM + "next"), light).target.name == home


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        pytest.param("round-robin", ["e0", "e1", "e2", "e3"] * 3, id="round-robin"),
        pytest.param("least-requests", None, id="least-requests"),
    ],
)
def test_load_only_configs_ignore_prefixes(name: str, expected: list[str] | None) -> None:
    scheduler = build_scheduler(builtin_config(name), ManualClock(), seed=0)
    picks = _dispatch(scheduler, [SYSTEM] * 12, _pool())
    if expected is not None:
        assert picks == expected
    assert Counter(picks) == {"e0": 3, "e1": 3, "e2": 3, "e3": 3}


def test_random_config_uses_every_endpoint() -> None:
    scheduler = build_scheduler(builtin_config("random"), ManualClock(), seed=0)
    picks = Counter(scheduler.schedule(request(SYSTEM), _pool()).target.name for _ in range(200))
    assert set(picks) == {"e0", "e1", "e2", "e3"}
