"""``max-score`` picker: the highest weighted score wins; the rest follow as fallbacks.

Targets are sorted by score, highest first. Endpoints tied for the top score (within
``1e-9``) are broken by the plugin's own seeded random generator, so equal endpoints share
load instead of the first one taking everything.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from operator import attrgetter

from pilothouse.scheduling.context import PluginContext
from pilothouse.scheduling.interfaces import CycleState
from pilothouse.scheduling.plugins.base import NamedPlugin, PickerParameters
from pilothouse.scheduling.types import Endpoint, SchedulingRequest, ScoredEndpoint
from pilothouse.scheduling.validation import parse_parameters

TIE_TOLERANCE = 1e-9
_by_score = attrgetter("score")


class MaxScorePicker(NamedPlugin):
    __slots__ = ("_limit", "_rng")

    def __init__(self, name: str, ctx: PluginContext, *, max_targets: int | None = None) -> None:
        super().__init__(name)
        self._rng = ctx.rng(name)
        self._limit = max_targets

    @classmethod
    def create(
        cls, name: str, parameters: Mapping[str, object], ctx: PluginContext
    ) -> MaxScorePicker:
        p = parse_parameters(PickerParameters, parameters)
        return cls(name, ctx, max_targets=p.max_targets)

    def pick(
        self, state: CycleState, request: SchedulingRequest, scored: Sequence[ScoredEndpoint]
    ) -> tuple[Endpoint, ...]:
        if not scored:
            return ()
        ranked = sorted(scored, key=_by_score, reverse=True)
        floor = ranked[0].score - TIE_TOLERANCE
        ties = 1
        while ties < len(ranked) and ranked[ties].score >= floor:
            ties += 1
        if ties > 1:
            winner = self._rng.randrange(ties)
            if winner:
                ranked.insert(0, ranked.pop(winner))
        return tuple(s.endpoint for s in ranked[: self._limit])
