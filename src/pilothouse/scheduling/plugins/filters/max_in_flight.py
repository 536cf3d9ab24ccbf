"""``max-in-flight`` filter: a hard cap on requests in flight per endpoint, shedding beyond it.

Keeps the endpoints with fewer than ``max_in_flight`` requests in flight (the gateway's or
the picker's own count, which never lags). When no endpoint is below the cap the request is
shed: :class:`~pilothouse.errors.RequestShed`, which both front doors answer with 429 and a
``retry-after`` of ``retry_after_s``. ``max_in_flight: 0`` sheds every request (draining a
pool, or testing a client's and a data plane's 429 handling).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from pydantic import Field

from pilothouse.errors import RequestShed
from pilothouse.scheduling.context import PluginContext
from pilothouse.scheduling.interfaces import CycleState
from pilothouse.scheduling.plugins.base import NamedPlugin
from pilothouse.scheduling.types import Endpoint, SchedulingRequest
from pilothouse.scheduling.validation import ParametersModel, parse_parameters


class MaxInFlightParameters(ParametersModel):
    max_in_flight: int = Field(ge=0)
    retry_after_s: float = Field(default=1.0, gt=0.0, allow_inf_nan=False)


class MaxInFlightFilter(NamedPlugin):
    """Keeps endpoints under the cap; sheds the request when none is."""

    __slots__ = ("_max", "_retry_after")

    def __init__(self, name: str, *, max_in_flight: int, retry_after_s: float = 1.0) -> None:
        super().__init__(name)
        self._max = max_in_flight
        self._retry_after = retry_after_s

    @classmethod
    def create(
        cls, name: str, parameters: Mapping[str, object], ctx: PluginContext
    ) -> MaxInFlightFilter:
        p = parse_parameters(MaxInFlightParameters, parameters)
        return cls(name, max_in_flight=p.max_in_flight, retry_after_s=p.retry_after_s)

    def filter(
        self, state: CycleState, request: SchedulingRequest, endpoints: Sequence[Endpoint]
    ) -> Sequence[Endpoint]:
        cap = self._max
        kept = [e for e in endpoints if e.in_flight < cap]
        if not kept and endpoints:
            raise RequestShed(
                f"every endpoint has {cap} or more requests in flight ({self.name})",
                retry_after=self._retry_after,
            )
        return endpoints if len(kept) == len(endpoints) else kept
