"""What applying a new spec to a running fleet will do, in words, for the person applying it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from pilothouse.config.fleet import FleetSpec
from pilothouse.controlplane.features import pending_features
from pilothouse.controlplane.reconcile import Action, RestartReplica, StartReplica


@dataclass(frozen=True, slots=True)
class ApplyReport:
    """The first actions the new spec leads to, and what it cannot change live."""

    actions: tuple[str, ...]
    notes: tuple[str, ...]

    def as_dict(self) -> dict[str, object]:
        return {"applied": True, "actions": list(self.actions), "notes": list(self.notes)}


def describe_action(action: Action) -> str:
    if isinstance(action, StartReplica):
        return f"start {action.name}"
    if isinstance(action, RestartReplica):
        return f"restart {action.name}: {action.reason}"
    how = "drain and stop" if action.drain else "stop"
    return f"{how} {action.name}: {action.reason}" if action.reason else f"{how} {action.name}"


def describe_change(old: FleetSpec, new: FleetSpec, actions: Sequence[Action]) -> ApplyReport:
    """``actions`` are the new spec's first reconcile; notes name what needs a restart."""
    notes = []
    if new.gateway != old.gateway:
        notes.append("gateway settings changed: restart `pilothouse up` to apply them")
    before = {m.name: m.endpoints for m in old.models if not m.launched}
    after = {m.name: m.endpoints for m in new.models if not m.launched}
    if before != after:
        notes.append("models with 'endpoints' changed: restart `pilothouse up` to apply them")
    notes += pending_features(new)
    return ApplyReport(tuple(describe_action(a) for a in actions), tuple(notes))
