"""``least-requests`` scorer: prefers endpoints with fewer requests in flight.

Uses the gateway's own in-flight count (it never lags, unlike scraped engine metrics),
min-max normalised over the candidates: the least busy scores 1.0, the busiest 0.0, and
equal loads all score 1.0.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from pilothouse.scheduling.context import PluginContext
from pilothouse.scheduling.interfaces import CycleState
from pilothouse.scheduling.plugins.base import NamedPlugin, NoParameters, lower_is_better
from pilothouse.scheduling.types import Endpoint, SchedulingRequest
from pilothouse.scheduling.validation import parse_parameters


class LeastRequestsScorer(NamedPlugin):
    __slots__ = ()

    @classmethod
    def create(
        cls, name: str, parameters: Mapping[str, object], ctx: PluginContext
    ) -> LeastRequestsScorer:
        parse_parameters(NoParameters, parameters)
        return cls(name)

    def score(
        self, state: CycleState, request: SchedulingRequest, endpoints: Sequence[Endpoint]
    ) -> Sequence[float]:
        return lower_is_better([e.in_flight for e in endpoints])
