"""``sticky-prefix`` scorer: prefix affinity that holds until a replica is *relatively* busy.

One decision per request, made from two signals that never lag: the prefix-match fractions
a prefix plugin (``approx-prefix`` or ``precise-prefix``) published in the cycle, and the
gateway's own in-flight count per replica.

1. **Warm**: the replicas whose match is within ``warm_tolerance`` of the best match. The
   least busy of them (fewest requests awaiting their first token, then fewest in flight)
   gets the request, unless it is *overloaded*:
   ``in_flight > (1 + overload_ratio) x mean_in_flight + overload_slack``, the mean taken
   over the candidates. Overload is relative on purpose: when every replica is busy (a
   fleet past saturation) nothing is overloaded and a prefix stays on its replica, which
   is what keeps cache hits, and therefore throughput, up; when only the warm replica is
   busy (a hot tenant), the request spills. With ``backlog_slack_tokens`` set, a warm
   replica is also passed over when it is *backlogged*: its prefill cost for this request,
   ``in_flight_tokens`` (the uncached prompt tokens awaiting a first token there) plus the
   request's uncached tokens, exceeds ``backlog_ratio`` x the candidates' mean cost +
   ``backlog_slack_tokens``. Request counts do not see what delays a first token on long
   prompts: one cold 100k-token prefill holds a replica for seconds with one request in
   flight. The request then goes to the cheapest replica.
2. **Spill**: the least busy candidate, in the same order (ties: the best match). A
   spilled prefix becomes warm on a second replica, so a hot prefix spreads over as many
   replicas as its load needs, and no further.
3. **Cold** (nothing matches): among the replicas that are not overloaded (nor
   backlogged, where any is not), the one whose
   prefix index holds the least (``PREFIX_INDEX_SIZE_KEY``; ties: the least busy). This is
   SGLang's smallest-tree placement: new prefixes spread over replicas by what they already
   cache, which balances tenants for the whole run, where the instantaneous in-flight
   count would balance only the moment.

Scores are one-hot (1.0 for the choice, 0.0 elsewhere): combine with ``max-score``. The
scorer publishes each replica's uncached prompt tokens under ``UNCACHED_TOKENS_KEY``, so
the gateway, the endpoint picker and the simulator count the target's prefill backlog.
Measured against the alternatives in docs/plugins/sticky-prefix.md.
"""

from __future__ import annotations

import math
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


class StickyPrefixParameters(ParametersModel):
    overload_ratio: float = Field(default=0.25, ge=0.0, le=100.0)
    """Overloaded: more in flight than ``(1 + overload_ratio)`` x the candidates' mean..."""
    overload_slack: float = Field(default=4.0, ge=0.0)
    """...plus ``overload_slack`` requests (small, noisy counts never trigger a spill)."""
    warm_tolerance: float = Field(default=0.05, ge=0.0, le=1.0)
    """Replicas whose match is this close to the best one count as warm too."""
    min_match: float = Field(default=0.0, ge=0.0, le=1.0)
    """A best match below this is placed as cold (SGLang's ``cache_threshold``): a short
    shared prefix ahead of a long unique input saves too little to pile requests up for."""
    backlog_ratio: float = Field(default=1.0, ge=1.0, le=100.0)
    """Backlogged: a replica whose prefill cost for this request (its backlog of uncached
    prompt tokens awaiting a first token, plus this prompt's uncached tokens there) exceeds
    ``backlog_ratio`` x the candidates' mean cost..."""
    backlog_slack_tokens: int | None = Field(default=None, ge=0)
    """...plus this many tokens. ``None`` (the default): no replica is ever backlogged."""


class StickyPrefixScorer(NamedPlugin):
    """See the module docstring."""

    __slots__ = ("_backlog_ratio", "_backlog_slack", "_min_match", "_ratio", "_slack", "_tolerance")

    def __init__(self, name: str, parameters: StickyPrefixParameters | None = None) -> None:
        super().__init__(name)
        p = parameters or StickyPrefixParameters()
        self._ratio = 1.0 + p.overload_ratio
        self._slack = p.overload_slack
        self._tolerance = p.warm_tolerance
        self._min_match = p.min_match
        self._backlog_slack = p.backlog_slack_tokens
        self._backlog_ratio = p.backlog_ratio

    @classmethod
    def create(
        cls, name: str, parameters: Mapping[str, object], ctx: PluginContext
    ) -> StickyPrefixScorer:
        return cls(name, parse_parameters(StickyPrefixParameters, parameters))

    def score(
        self, state: CycleState, request: SchedulingRequest, endpoints: Sequence[Endpoint]
    ) -> Sequence[float]:
        scores = [0.0] * len(endpoints)
        if not endpoints:
            return scores
        match = _mapping(state.data.get(PREFIX_MATCH_KEY))
        prompt = request.prompt_tokens
        if len(endpoints) == 1:  # every rule below picks it: only its uncached tokens to note
            name = endpoints[0].name
            uncached_there = round(prompt * (1.0 - float(match.get(name, 0.0))))
            state.data[UNCACHED_TOKENS_KEY] = {name: uncached_there}
            return [1.0]
        fractions = [float(match.get(e.name, 0.0)) for e in endpoints]
        uncached = [round(prompt * (1.0 - f)) for f in fractions]
        state.data[UNCACHED_TOKENS_KEY] = dict(
            zip((e.name for e in endpoints), uncached, strict=True)
        )
        loads = [e.in_flight for e in endpoints]
        limit = self._ratio * sum(loads) / len(loads) + self._slack
        costs = [e.in_flight_tokens + u for e, u in zip(endpoints, uncached, strict=True)]
        backlog_limit = self._backlog_limit(costs)
        best = max(fractions)
        everyone = range(len(endpoints))
        if best > 0.0 and best >= self._min_match:
            floor = best - self._tolerance
            waits = [e.awaiting_first_token for e in endpoints]

            def busy(i: int) -> tuple[int, int, float]:
                return (waits[i], loads[i], -fractions[i])

            warm = min((i for i in everyone if fractions[i] >= floor), key=busy)
            if loads[warm] > limit:
                choice = min(everyone, key=busy)
            elif costs[warm] > backlog_limit:
                choice = min(everyone, key=lambda i: (costs[i], busy(i)))
            else:
                choice = warm
        else:
            calm = [i for i in everyone if loads[i] <= limit]
            calm = [i for i in calm if costs[i] <= backlog_limit] or calm or list(everyone)
            choice = _smallest_index(state, endpoints, calm, loads)
        scores[choice] = 1.0
        return scores

    def _backlog_limit(self, costs: Sequence[int]) -> float:
        """The prefill cost (backlog + uncached tokens) above which a replica is backlogged:
        relative to the mean, so a fleet that queues everywhere stays sticky."""
        if self._backlog_slack is None:
            return math.inf
        return self._backlog_ratio * sum(costs) / len(costs) + self._backlog_slack


def _smallest_index(
    state: CycleState, endpoints: Sequence[Endpoint], candidates: list[int], loads: list[int]
) -> int:
    """Of ``candidates``, the replica whose prefix index holds the least (ties: the least
    busy): where a new prefix goes."""
    sizes = _mapping(state.data.get(PREFIX_INDEX_SIZE_KEY))
    return min(candidates, key=lambda i: (sizes.get(endpoints[i].name, 0), loads[i]))


def _mapping(value: object) -> Mapping[str, float]:
    return value if isinstance(value, dict) else {}
