"""Reconcile, table-driven: observed replicas in, actions out."""

from __future__ import annotations

from typing import Any

import pytest

from pilothouse.config.fleet import FleetSpec
from pilothouse.controlplane.reconcile import (
    Action,
    ObservedFleet,
    ObservedReplica,
    Phase,
    RestartReplica,
    StartReplica,
    StopReplica,
    generation,
    reconcile,
    restart_delay,
)

FIXED = {"name": "m", "engine": "sim", "replicas": 2}
AUTO = {"name": "m", "engine": "sim", "autoscaling": {"min_replicas": 0, "max_replicas": 4}}
LOCAL = {"restart_backoff_s": 1, "restart_backoff_max_s": 8, "start_timeout_s": 60}


def fleet(*models: dict[str, Any]) -> FleetSpec:
    return FleetSpec.model_validate({"models": list(models), "local": LOCAL})


GEN = generation(fleet(FIXED).models[0])


def rep(name: str, phase: Phase, since: float = 0.0, restarts: int = 0, gen: str = GEN) -> Any:
    return ObservedReplica(name, name.rsplit("-", 1)[0], gen, phase, since, restarts)


CASES: list[tuple[str, dict[str, Any], list[Any], dict[str, int], float, list[Action]]] = [
    ("start-fixed", FIXED, [], {}, 0, [StartReplica("m", "m-0"), StartReplica("m", "m-1")]),
    ("steady", FIXED, [rep("m-0", "ready"), rep("m-1", "starting")], {}, 5, []),
    ("fill-the-gap", FIXED, [rep("m-1", "ready")], {}, 5, [StartReplica("m", "m-0")]),
    ("draining-keeps-its-name", FIXED, [rep("m-0", "draining"), rep("m-1", "ready")], {}, 5,
     [StartReplica("m", "m-2")]),
    ("auto-starts-at-min", AUTO, [], {}, 0, []),
    ("auto-follows-target", AUTO, [rep("m-0", "ready")], {"m": 3}, 5,
     [StartReplica("m", "m-1"), StartReplica("m", "m-2")]),
    ("auto-target-clamped", AUTO, [], {"m": 9}, 5, [StartReplica("m", f"m-{i}") for i in range(4)]),
    ("scale-down-newest-ready-drains", AUTO,
     [rep("m-0", "ready", 1), rep("m-1", "ready", 3), rep("m-2", "ready", 2)], {"m": 1}, 9,
     [StopReplica("m-1", True, "scale down to 1"), StopReplica("m-2", True, "scale down to 1")]),
    ("scale-down-not-serving-first", AUTO,
     [rep("m-0", "ready", 1), rep("m-1", "starting", 3), rep("m-2", "crashed", 2)], {"m": 1}, 9,
     [StopReplica("m-2", False, "scale down to 1"), StopReplica("m-1", False, "scale down to 1")]),
    ("to-zero", AUTO, [rep("m-0", "ready", 1)], {"m": 0}, 9,
     [StopReplica("m-0", True, "scale down to 0")]),
    ("crash-waits-for-backoff", FIXED, [rep("m-0", "ready"), rep("m-1", "crashed", 10, 2)], {},
     13.9, []),
    ("crash-restarts-after-backoff", FIXED, [rep("m-0", "ready"), rep("m-1", "crashed", 10, 2)],
     {}, 14, [RestartReplica("m-1", "crashed; restart #3")]),
    ("stuck-start-restarts", FIXED, [rep("m-0", "ready"), rep("m-1", "starting", 10)], {}, 70,
     [RestartReplica("m-1", "not healthy 60s after start")]),
    ("removed-model", FIXED,
     [rep("m-0", "ready"), rep("x-0", "ready"), rep("x-1", "starting"), rep("x-2", "draining")],
     {}, 5, [StartReplica("m", "m-1"), StopReplica("x-0", True, "model removed from the spec"),
             StopReplica("x-1", False, "model removed from the spec")]),
]  # fmt: skip


@pytest.mark.parametrize(
    ("model", "replicas", "targets", "now", "expected"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_reconcile(
    model: dict[str, Any],
    replicas: list[ObservedReplica],
    targets: dict[str, int],
    now: float,
    expected: list[Action],
) -> None:
    observed = ObservedFleet(now, tuple(replicas), targets)
    assert reconcile(fleet(model), observed) == expected


def test_static_endpoint_models_launch_nothing() -> None:
    spec = fleet({"name": "s", "engine": "vllm", "endpoints": ["127.0.0.1:9"]})
    assert reconcile(spec, ObservedFleet(0.0)) == []


def rolling(replicas: list[ObservedReplica]) -> list[Action]:
    changed = {**FIXED, "args": {"time-scale": 10}}
    return reconcile(fleet(changed), ObservedFleet(50.0, tuple(replicas)))


def test_spec_change_rolls_one_replica_at_a_time() -> None:
    new = generation(fleet({**FIXED, "args": {"time-scale": 10}}).models[0])
    old = [rep("m-0", "ready", 1), rep("m-1", "ready", 2)]
    assert rolling(old) == [StartReplica("m", "m-2")]
    assert rolling([*old, rep("m-2", "starting", 40, gen=new)]) == []
    step = rolling([*old, rep("m-2", "ready", 45, gen=new)])
    assert step == [StartReplica("m", "m-3"), StopReplica("m-0", True, "spec changed; replaced")]
    done = [
        rep("m-1", "ready", 2),
        rep("m-2", "ready", 45, gen=new),
        rep("m-3", "ready", 48, gen=new),
    ]
    assert rolling(done) == [StopReplica("m-1", True, "spec changed; replaced")]
    crashed_old = [rep("m-0", "crashed", 1), rep("m-2", "ready", 45, gen=new)]
    assert rolling(crashed_old) == [
        StartReplica("m", "m-1"),
        StopReplica("m-0", False, "spec changed"),
    ]


@pytest.mark.parametrize(("restarts", "delay"), [(0, 1), (1, 2), (2, 4), (3, 8), (9, 8), (99, 8)])
def test_restart_backoff_doubles_up_to_the_cap(restarts: int, delay: float) -> None:
    assert restart_delay(restarts, fleet(FIXED).local) == delay


def test_generation_ignores_replica_counts_but_not_engine_args() -> None:
    base = fleet(FIXED).models[0]
    assert generation(base) == generation(fleet({**FIXED, "replicas": 5}).models[0])
    assert generation(base) != generation(fleet({**FIXED, "args": {"seed": 1}}).models[0])
