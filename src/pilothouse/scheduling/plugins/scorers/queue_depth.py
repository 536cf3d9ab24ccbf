"""``queue-depth`` scorer: prefers endpoints whose engine queue is shorter.

Reads the engine's ``vllm:num_requests_waiting`` (``metrics.waiting``), min-max normalised
over the candidates: the shortest queue scores 1.0, the longest 0.0, equal queues all 1.0.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from pilothouse.scheduling.context import PluginContext
from pilothouse.scheduling.interfaces import CycleState
from pilothouse.scheduling.plugins.base import NamedPlugin, NoParameters, lower_is_better
from pilothouse.scheduling.types import Endpoint, SchedulingRequest
from pilothouse.scheduling.validation import parse_parameters


class QueueDepthScorer(NamedPlugin):
    __slots__ = ()

    @classmethod
    def create(
        cls, name: str, parameters: Mapping[str, object], ctx: PluginContext
    ) -> QueueDepthScorer:
        parse_parameters(NoParameters, parameters)
        return cls(name)

    def score(
        self, state: CycleState, request: SchedulingRequest, endpoints: Sequence[Endpoint]
    ) -> Sequence[float]:
        return lower_is_better([e.metrics.waiting for e in endpoints])
