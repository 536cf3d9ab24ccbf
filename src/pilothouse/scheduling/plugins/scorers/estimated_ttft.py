"""``estimated-ttft`` scorer: "sticky until saturated" prefix affinity, from one estimate.

For each endpoint the time to first token of this request is estimated, in prompt tokens to
prefill before it (the unit cancels out between identical replicas, so no throughput
constant is needed to rank them):

    cost(e) = backlog(e) + uncached(request, e)

``backlog(e)`` is ``Endpoint.in_flight_tokens``: the uncached prompt tokens of requests the
gateway sent to ``e`` that have not produced their first token yet (the gateway counts
them itself, so they never lag). ``uncached(request, e)`` is the request's prompt tokens
minus what ``e`` is estimated to hold in its prefix cache, read from the prefix-match
fraction a prefix plugin (``approx-prefix``) published in the cycle. The replica that holds
a prompt's prefix is therefore preferred until its backlog exceeds a cold replica's by
more than what the cache saves; then load spreads by prefill work, which also replicates a
hot prefix onto a second replica. ``affinity_margin`` (a fraction of the request's prompt)
makes a warm replica stickier than the bare estimate, trading a little TTFT now for cache
locality later.

The score is ``(min_cost + 1) / (cost + 1)``: 1.0 for the cheapest endpoint. The estimate
for each endpoint is published as ``uncached-tokens`` so the scheduler reports it and the
gateway can count the picked replica's backlog.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from pydantic import Field

from pilothouse.scheduling.context import PluginContext
from pilothouse.scheduling.interfaces import (
    PREFIX_INDEX_SIZE_KEY,
    PREFIX_MATCH_KEY,
    UNCACHED_TOKENS_KEY,
    CycleState,
)
from pilothouse.scheduling.plugins.base import NamedPlugin
from pilothouse.scheduling.types import Endpoint, SchedulingRequest
from pilothouse.scheduling.validation import ParametersModel, parse_parameters

_SIZE_TIE_BREAK = 1e-3  # tokens of cost per cached block: only ever breaks ties


class EstimatedTtftParameters(ParametersModel):
    affinity_margin: float = Field(default=0.0, ge=0.0, le=100.0)
    cold_factor: float = Field(default=1.0, ge=1.0, le=100.0)
    queued_request_tokens: float = Field(default=0.0, ge=0.0)


class EstimatedTtftScorer(NamedPlugin):
    __slots__ = ("_cold_factor", "_margin", "_queued")

    def __init__(self, name: str, parameters: EstimatedTtftParameters | None = None) -> None:
        super().__init__(name)
        p = parameters or EstimatedTtftParameters()
        self._margin = p.affinity_margin
        self._cold_factor = p.cold_factor
        self._queued = p.queued_request_tokens

    @classmethod
    def create(
        cls, name: str, parameters: Mapping[str, object], ctx: PluginContext
    ) -> EstimatedTtftScorer:
        return cls(name, parse_parameters(EstimatedTtftParameters, parameters))

    def score(
        self, state: CycleState, request: SchedulingRequest, endpoints: Sequence[Endpoint]
    ) -> Sequence[float]:
        match = state.data.get(PREFIX_MATCH_KEY)
        matched: Mapping[str, float] = match if isinstance(match, dict) else {}
        prompt = request.prompt_tokens
        cold_penalty = self._margin * prompt
        sizes = state.data.get(PREFIX_INDEX_SIZE_KEY)
        size: Mapping[str, int] = sizes if isinstance(sizes, dict) else {}
        uncached: dict[str, int] = {}
        costs: list[float] = []
        for e in endpoints:
            fraction = matched.get(e.name, 0.0)
            tokens = round(prompt * (1.0 - fraction))
            uncached[e.name] = tokens
            cost: float = e.in_flight_tokens + tokens + self._queued * e.awaiting_first_token
            if fraction == 0.0:
                # Cold: pay for lost locality; among equals, place new prefixes where the
                # least is cached (balances tenants, as SGLang's smallest-tree rule does).
                cost = (
                    cost * self._cold_factor + cold_penalty + _SIZE_TIE_BREAK * size.get(e.name, 0)
                )
            costs.append(cost)
        state.data[UNCACHED_TOKENS_KEY] = uncached
        best = min(costs)
        return [(best + 1.0) / (cost + 1.0) for cost in costs]
