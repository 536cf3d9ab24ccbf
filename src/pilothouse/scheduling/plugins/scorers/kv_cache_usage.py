"""``kv-cache-usage`` scorer: prefers endpoints with more free KV cache.

Scores ``1 - metrics.kv_cache_usage`` (``vllm:kv_cache_usage_perc``, 0..1); not normalised
across candidates, so two nearly-equal caches score nearly the same. The runner clamps
out-of-range reports to [0, 1].
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from pilothouse.scheduling.context import PluginContext
from pilothouse.scheduling.interfaces import CycleState
from pilothouse.scheduling.plugins.base import NamedPlugin, NoParameters
from pilothouse.scheduling.types import Endpoint, SchedulingRequest
from pilothouse.scheduling.validation import parse_parameters


class KvCacheUsageScorer(NamedPlugin):
    __slots__ = ()

    @classmethod
    def create(
        cls, name: str, parameters: Mapping[str, object], ctx: PluginContext
    ) -> KvCacheUsageScorer:
        parse_parameters(NoParameters, parameters)
        return cls(name)

    def score(
        self, state: CycleState, request: SchedulingRequest, endpoints: Sequence[Endpoint]
    ) -> Sequence[float]:
        return [1.0 - e.metrics.kv_cache_usage for e in endpoints]
