"""``ready`` filter: drops endpoints whose snapshot says they are not ready."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from pilothouse.scheduling.context import PluginContext
from pilothouse.scheduling.interfaces import CycleState
from pilothouse.scheduling.plugins.base import NamedPlugin, NoParameters
from pilothouse.scheduling.types import Endpoint, SchedulingRequest
from pilothouse.scheduling.validation import parse_parameters


class ReadyFilter(NamedPlugin):
    """Keeps endpoints with ``ready=True``; returns the input unchanged when all are ready."""

    __slots__ = ()

    @classmethod
    def create(cls, name: str, parameters: Mapping[str, object], ctx: PluginContext) -> ReadyFilter:
        parse_parameters(NoParameters, parameters)
        return cls(name)

    def filter(
        self, state: CycleState, request: SchedulingRequest, endpoints: Sequence[Endpoint]
    ) -> Sequence[Endpoint]:
        for endpoint in endpoints:
            if not endpoint.ready:
                return [e for e in endpoints if e.ready]
        return endpoints
