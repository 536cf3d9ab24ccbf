"""One compiled profile: filters, then weighted scorers, then exactly one picker.

This is the per-request hot path, so it avoids pydantic, dicts it does not return and
per-endpoint function calls: scores are clamped to [0, 1] and accumulated inline.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from pilothouse.errors import SchedulingError
from pilothouse.scheduling.interfaces import CycleState, Filter, Picker, Scorer
from pilothouse.scheduling.types import (
    Endpoint,
    ProfileResult,
    SchedulingRequest,
    ScoredEndpoint,
)

#: Key in ``CycleState.data`` naming why the last profile produced no target.
EXHAUSTED_KEY = "pilothouse.scheduling.exhausted"

_NO_TARGETS = ProfileResult(targets=())


@dataclass(frozen=True, slots=True)
class WeightedScorer:
    scorer: Scorer
    weight: float


@dataclass(frozen=True, slots=True)
class Profile:
    """A profile ready to run; built by :mod:`pilothouse.scheduling.builder`."""

    name: str
    filters: tuple[Filter, ...]
    scorers: tuple[WeightedScorer, ...]
    picker: Picker

    def run(
        self, state: CycleState, request: SchedulingRequest, endpoints: Sequence[Endpoint]
    ) -> ProfileResult:
        """Targets in preference order, or none (with the reason in ``state.data``)."""
        candidates = endpoints
        for plugin in self.filters:
            candidates = plugin.filter(state, request, candidates)
            if not candidates:
                state.data[EXHAUSTED_KEY] = (
                    f"filter {plugin.name!r} of profile {self.name!r} removed every endpoint"
                )
                return _NO_TARGETS
        totals = self._score(state, request, candidates)
        scored = [ScoredEndpoint(e, t) for e, t in zip(candidates, totals, strict=True)]
        targets = self.picker.pick(state, request, scored)
        if not targets:
            state.data[EXHAUSTED_KEY] = f"picker {self.picker.name!r} of {self.name!r} chose none"
            return _NO_TARGETS
        return ProfileResult(
            targets=targets, scores={e.name: t for e, t in zip(candidates, totals, strict=True)}
        )

    def _score(
        self, state: CycleState, request: SchedulingRequest, candidates: Sequence[Endpoint]
    ) -> list[float]:
        totals = [0.0] * len(candidates)
        for ws in self.scorers:
            values = ws.scorer.score(state, request, candidates)
            if len(values) != len(totals):
                raise SchedulingError(
                    f"scorer {ws.scorer.name!r} returned {len(values)} scores "
                    f"for {len(totals)} endpoints"
                )
            weight = ws.weight
            for i, value in enumerate(values):
                if value >= 1.0:
                    totals[i] += weight
                elif value > 0.0:
                    totals[i] += weight * value
                # below 0 or NaN: contributes nothing
        return totals
