"""The fleet and routing pages' data: pure functions over snapshots and the decision ring."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from pilothouse.scheduling.types import Endpoint
from pilothouse.ui.decisions import DecisionRecord

_REFUSALS = {
    401: "no or invalid credential",
    403: "not allowed (scope, network or policy)",
    404: "unknown model",
    429: "shed by flow control or over a rate limit or budget",
    499: "the client went away",
    503: "no ready replica (or held too long)",
}


@dataclass(frozen=True, slots=True)
class ReplicaRow:
    name: str
    address: str
    engine: str
    state: str
    in_flight: int
    waiting: int
    running: int
    kv_cache_usage: float
    prefill_backlog: int
    hit_rate: float | None
    """Share of prompt tokens the scheduler expected the replica's prefix cache to serve,
    over the recent decisions that picked it (None: no estimate)."""
    routed: int
    """Recent decisions (in the ring) that picked it."""


@dataclass(frozen=True, slots=True)
class ModelRow:
    name: str
    replicas: tuple[ReplicaRow, ...]

    @property
    def ready(self) -> int:
        return sum(1 for r in self.replicas if r.state == "ready")


@dataclass(frozen=True, slots=True)
class FleetView:
    models: tuple[ModelRow, ...]
    in_flight: int
    requests_total: int
    targets: Mapping[str, object]
    phases: tuple[Mapping[str, object], ...]
    scaling: tuple[Mapping[str, object], ...]
    control: bool
    """True under ``pilothouse up`` (the control plane's status is known)."""


def fleet_view(
    endpoints: Iterable[Endpoint],
    recent: Sequence[DecisionRecord],
    total: int,
    control: Mapping[str, object] | None,
) -> FleetView:
    """Models with their replicas' state and load, and the control plane's view if any."""
    hits = _hit_rates(recent)
    by_model: dict[str, list[ReplicaRow]] = {}
    for e in sorted(endpoints, key=lambda e: (e.model, e.name)):
        hit, routed = hits.get(e.name, (None, 0))
        by_model.setdefault(e.model, []).append(
            ReplicaRow(
                e.name,
                e.address,
                e.engine,
                "ready" if e.ready else "not ready",
                e.in_flight,
                e.metrics.waiting,
                e.metrics.running,
                e.metrics.kv_cache_usage,
                e.in_flight_tokens,
                hit,
                routed,
            )
        )
    models = tuple(ModelRow(name, tuple(rows)) for name, rows in by_model.items())
    in_flight = sum(r.in_flight for m in models for r in m.replicas)
    status = control or {}
    return FleetView(
        models,
        in_flight,
        total,
        _mapping(status.get("targets")),
        _rows(status.get("replicas")),
        _rows(status.get("scaling")),
        control is not None,
    )


def _hit_rates(recent: Sequence[DecisionRecord]) -> dict[str, tuple[float | None, int]]:
    prompt: dict[str, int] = {}
    cached: dict[str, int] = {}
    routed: dict[str, int] = {}
    for record in recent:
        choice = record.choice
        if choice is None:
            continue
        routed[choice.picked] = routed.get(choice.picked, 0) + 1
        if choice.uncached_tokens is not None and choice.prompt_tokens > 0:
            prompt[choice.picked] = prompt.get(choice.picked, 0) + choice.prompt_tokens
            saved = max(0, choice.prompt_tokens - choice.uncached_tokens)
            cached[choice.picked] = cached.get(choice.picked, 0) + saved
    return {
        name: ((cached[name] / prompt[name]) if prompt.get(name) else None, count)
        for name, count in routed.items()
    }


def _mapping(value: object) -> Mapping[str, object]:
    return value if isinstance(value, Mapping) else {}


def _rows(value: object) -> tuple[Mapping[str, object], ...]:
    if not isinstance(value, list | tuple):
        return ()
    return tuple(v for v in value if isinstance(v, Mapping))


@dataclass(frozen=True, slots=True)
class DecisionRow:
    record: DecisionRecord
    why: str


def decision_rows(recent: Sequence[DecisionRecord]) -> list[DecisionRow]:
    """Each recent request with a one-line reason: the pick against the runner-up, or why
    it was refused."""
    return [DecisionRow(r, why(r)) for r in recent]


def why(record: DecisionRecord) -> str:
    choice = record.choice
    if choice is None:
        return _REFUSALS.get(record.status, "failed before scheduling")
    text = f"profile {choice.profile}: {choice.picked}"
    if choice.picked_score is not None:
        text += f" scored {choice.picked_score:.3f}"
    if choice.runner_up is not None:
        text += f", runner-up {choice.runner_up}"
        if choice.runner_up_score is not None:
            text += f" {choice.runner_up_score:.3f}"
    else:
        text += " (the only candidate)"
    if record.status >= 400:
        text += f"; then {_REFUSALS.get(record.status, f'failed with {record.status}')}"
    return text
