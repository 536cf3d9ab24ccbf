"""Reconcile: (desired Fleet spec, observed replicas) → the actions that close the gap.

Pure and clock-injected (``observed.now``): it decides, an executor acts. Per launched
model of the spec, with ``target`` its replica count (fixed ``replicas``, or the
autoscaler's target clamped into the autoscaling bounds):

- **scale**: too few replicas of the current spec → :class:`StartReplica` (named
  ``<model>-<n>``, lowest free ``n``); too many → :class:`StopReplica`, crashed first, then
  starting, then the newest ready ones (those drain first);
- **crashes**: a crashed replica is restarted once ``restart_backoff_s x 2^restarts``
  (at most ``restart_backoff_max_s``) has passed since it crashed; a replica still not
  healthy ``start_timeout_s`` after its start is restarted too;
- **spec changes** (engine, source or args differ from what a replica was started with):
  a rolling replacement, one surge replica at a time: start one of the new spec, and each
  time one is ready, drain one of the old;
- **removed models**: every replica stops (ready ones drain).

Replicas already draining are the executor's business and are left alone.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal

import orjson

from pilothouse.config.deploy import LocalSpec
from pilothouse.config.fleet import FleetSpec, ModelSpec

Phase = Literal["starting", "ready", "draining", "crashed"]
_STOP_ORDER: dict[str, int] = {"crashed": 0, "starting": 1, "ready": 2}


@dataclass(frozen=True, slots=True)
class ObservedReplica:
    name: str
    model: str
    generation: str
    """:func:`generation` of the model spec the replica was started from."""
    phase: Phase
    since: float
    """When it entered ``phase`` (its start, for ``starting``; its exit, for ``crashed``)."""
    restarts: int = 0
    """Consecutive crashes so far (the executor resets it once the replica stays up)."""


@dataclass(frozen=True, slots=True)
class ObservedFleet:
    now: float
    replicas: tuple[ObservedReplica, ...] = ()
    targets: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    """The autoscaler's replica target per autoscaled model."""


@dataclass(frozen=True, slots=True)
class StartReplica:
    model: str
    name: str


@dataclass(frozen=True, slots=True)
class StopReplica:
    name: str
    drain: bool = True
    reason: str = ""


@dataclass(frozen=True, slots=True)
class RestartReplica:
    name: str
    reason: str = ""


Action = StartReplica | StopReplica | RestartReplica


def generation(model: ModelSpec) -> str:
    """A fingerprint of what a running replica cannot change without a restart."""
    launch = {"engine": model.engine, "source": model.source, "args": model.args}
    return hashlib.sha256(orjson.dumps(launch, option=orjson.OPT_SORT_KEYS)).hexdigest()[:12]


def replica_target(model: ModelSpec, targets: Mapping[str, int]) -> int:
    """The replica count wanted for ``model`` now."""
    low, high = model.bounds
    if model.autoscaling is None:
        return model.initial_replicas
    return min(max(targets.get(model.name, model.initial_replicas), low), high)


def restart_delay(restarts: int, local: LocalSpec) -> float:
    """Exponential backoff, capped: base, 2 x base, 4 x base, ... up to the maximum."""
    return float(min(local.restart_backoff_max_s, local.restart_backoff_s * 2 ** min(restarts, 30)))


def reconcile(desired: FleetSpec, observed: ObservedFleet) -> list[Action]:
    """The actions that bring ``observed`` towards ``desired`` (see the module docstring)."""
    actions: list[Action] = []
    launched = {m.name: m for m in desired.models if m.launched}
    for model in launched.values():
        mine = [r for r in observed.replicas if r.model == model.name]
        actions += _model_actions(model, mine, desired.local, observed)
    for replica in observed.replicas:
        if replica.model not in launched and replica.phase != "draining":
            actions.append(_stop(replica, "model removed from the spec"))
    return actions


def _model_actions(
    model: ModelSpec, mine: list[ObservedReplica], local: LocalSpec, observed: ObservedFleet
) -> list[Action]:
    now, target, gen = observed.now, replica_target(model, observed.targets), generation(model)
    live = [r for r in mine if r.phase != "draining"]
    current = [r for r in live if r.generation == gen]
    outdated = [r for r in live if r.generation != gen]
    actions: list[Action] = []
    surplus = len(current) - target
    stopped = _stop_order(current)[: max(0, surplus)]
    actions += [_stop(r, f"scale down to {target}") for r in stopped]
    for replica in current:
        if replica not in stopped:
            actions += _heal(replica, local, now)
    missing = target - len(current)
    if missing > 0 and outdated:  # rolling replacement: one surge replica at a time
        missing = min(missing, 1 - sum(r.phase == "starting" for r in current))
    names = _free_names(model.name, (r.name for r in mine), max(0, missing))
    actions += [StartReplica(model.name, name) for name in names]
    actions += _retire(outdated, sum(r.phase == "ready" for r in current), target)
    return actions


def _heal(replica: ObservedReplica, local: LocalSpec, now: float) -> list[Action]:
    if replica.phase == "crashed":
        delay = restart_delay(replica.restarts, local)
        if now - replica.since >= delay:
            return [RestartReplica(replica.name, f"crashed; restart #{replica.restarts + 1}")]
    elif replica.phase == "starting" and now - replica.since >= local.start_timeout_s:
        return [RestartReplica(replica.name, f"not healthy {local.start_timeout_s:g}s after start")]
    return []


def _retire(outdated: list[ObservedReplica], ready_current: int, target: int) -> list[Action]:
    """Stop replicas of an older spec: at once if not serving, else as new ones are ready."""
    actions: list[Action] = [
        _stop(r, "spec changed") for r in outdated if r.phase in ("starting", "crashed")
    ]
    serving = sorted((r for r in outdated if r.phase == "ready"), key=lambda r: r.since)
    spare = ready_current + len(serving) - target
    actions += [_stop(r, "spec changed; replaced") for r in serving[: max(0, spare)]]
    return actions


def _stop(replica: ObservedReplica, reason: str) -> StopReplica:
    return StopReplica(replica.name, drain=replica.phase == "ready", reason=reason)


def _stop_order(replicas: list[ObservedReplica]) -> list[ObservedReplica]:
    """Which replicas to stop first: not serving before serving, newest first."""
    return sorted(replicas, key=lambda r: (_STOP_ORDER[r.phase], -r.since, r.name))


def _free_names(model: str, taken: Iterable[str], count: int) -> list[str]:
    used = set(taken)
    names: list[str] = []
    index = 0
    while len(names) < count:
        name = f"{model}-{index}"
        if name not in used:
            names.append(name)
        index += 1
    return names
