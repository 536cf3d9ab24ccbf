"""``round-robin`` picker: ignores scores and rotates over the candidates in name order.

Each cycle advances one step; the fallbacks are the next endpoints in the rotation. When
the candidate set changes, the rotation continues over the new set (by position).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from pilothouse.scheduling.context import PluginContext
from pilothouse.scheduling.interfaces import CycleState
from pilothouse.scheduling.plugins.base import NamedPlugin, PickerParameters
from pilothouse.scheduling.types import Endpoint, SchedulingRequest, ScoredEndpoint
from pilothouse.scheduling.validation import parse_parameters


def _endpoint_name(scored: ScoredEndpoint) -> str:
    return scored.endpoint.name


class RoundRobinPicker(NamedPlugin):
    __slots__ = ("_limit", "_next")

    def __init__(self, name: str, *, max_targets: int | None = None) -> None:
        super().__init__(name)
        self._limit = max_targets
        self._next = 0

    @classmethod
    def create(
        cls, name: str, parameters: Mapping[str, object], ctx: PluginContext
    ) -> RoundRobinPicker:
        p = parse_parameters(PickerParameters, parameters)
        return cls(name, max_targets=p.max_targets)

    def pick(
        self, state: CycleState, request: SchedulingRequest, scored: Sequence[ScoredEndpoint]
    ) -> tuple[Endpoint, ...]:
        if not scored:
            return ()
        ordered = [s.endpoint for s in sorted(scored, key=_endpoint_name)]
        start = self._next % len(ordered)
        self._next = start + 1
        rotated = ordered[start:] + ordered[:start]
        return tuple(rotated[: self._limit])
