"""``random`` picker: ignores scores and picks uniformly at random (seeded).

With ``max_targets`` above one (or unset) the fallbacks are a random order of the others.
Deterministic when the scheduler is built with a seed, as in the simulator.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from pilothouse.scheduling.context import PluginContext
from pilothouse.scheduling.interfaces import CycleState
from pilothouse.scheduling.plugins.base import NamedPlugin, PickerParameters
from pilothouse.scheduling.types import Endpoint, SchedulingRequest, ScoredEndpoint
from pilothouse.scheduling.validation import parse_parameters


class RandomPicker(NamedPlugin):
    __slots__ = ("_limit", "_rng")

    def __init__(self, name: str, ctx: PluginContext, *, max_targets: int | None = None) -> None:
        super().__init__(name)
        self._rng = ctx.rng(name)
        self._limit = max_targets

    @classmethod
    def create(
        cls, name: str, parameters: Mapping[str, object], ctx: PluginContext
    ) -> RandomPicker:
        p = parse_parameters(PickerParameters, parameters)
        return cls(name, ctx, max_targets=p.max_targets)

    def pick(
        self, state: CycleState, request: SchedulingRequest, scored: Sequence[ScoredEndpoint]
    ) -> tuple[Endpoint, ...]:
        if not scored:
            return ()
        if self._limit == 1:
            return (self._rng.choice(scored).endpoint,)
        endpoints = [s.endpoint for s in scored]
        self._rng.shuffle(endpoints)
        return tuple(endpoints[: self._limit])
