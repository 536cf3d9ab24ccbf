"""``not-saturated`` filter: the load escape valve for cache affinity.

Drops endpoints whose engine reports a queue of at least ``max_waiting`` requests or a KV
cache at least ``max_kv_cache_usage`` full, so affinity scorers cannot pile work onto a
saturated replica. When every endpoint is saturated it keeps them all: shedding is flow
control's job, not the filter's.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from pydantic import Field

from pilothouse.scheduling.context import PluginContext
from pilothouse.scheduling.interfaces import CycleState
from pilothouse.scheduling.plugins.base import NamedPlugin
from pilothouse.scheduling.types import Endpoint, SchedulingRequest
from pilothouse.scheduling.validation import ParametersModel, parse_parameters


class NotSaturatedParameters(ParametersModel):
    max_waiting: int = Field(default=128, gt=0)
    max_kv_cache_usage: float = Field(default=0.95, gt=0.0, le=1.0)


class NotSaturatedFilter(NamedPlugin):
    """Keeps endpoints below both thresholds, or all of them when none is."""

    __slots__ = ("_max_kv", "_max_waiting")

    def __init__(self, name: str, *, max_waiting: int = 128, max_kv_cache_usage: float = 0.95):
        super().__init__(name)
        self._max_waiting = max_waiting
        self._max_kv = max_kv_cache_usage

    @classmethod
    def create(
        cls, name: str, parameters: Mapping[str, object], ctx: PluginContext
    ) -> NotSaturatedFilter:
        p = parse_parameters(NotSaturatedParameters, parameters)
        return cls(name, max_waiting=p.max_waiting, max_kv_cache_usage=p.max_kv_cache_usage)

    def filter(
        self, state: CycleState, request: SchedulingRequest, endpoints: Sequence[Endpoint]
    ) -> Sequence[Endpoint]:
        max_waiting, max_kv = self._max_waiting, self._max_kv
        kept = [
            e
            for e in endpoints
            if e.metrics.waiting < max_waiting and e.metrics.kv_cache_usage < max_kv
        ]
        if not kept or len(kept) == len(endpoints):
            return endpoints
        return kept
