"""Extension points of the scheduler: one protocol per verb.

A scheduling cycle runs, for each profile the :class:`ProfileHandler` selects: filters in
order, then every scorer (each returns one value in [0, 1] per endpoint; the framework
clamps and weights them), then exactly one picker. After the cycle, every plugin that also
implements :class:`PostSchedule` is told the result (for example, to remember which replica
now holds a prompt prefix). Plugins never do I/O and get time only from the ``now`` they are
given.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from pilothouse.scheduling.types import (
    Endpoint,
    ProfileResult,
    SchedulingRequest,
    SchedulingResult,
    ScoredEndpoint,
)

PREFIX_MATCH_KEY = "prefix-match"
"""``CycleState.data`` key: ``dict[endpoint name, float]``, the fraction of the request's prompt
each endpoint is estimated to hold in its prefix cache. Written by prefix plugins
(``approx-prefix``), read by cost estimators (``estimated-ttft``)."""

PREFIX_INDEX_SIZE_KEY = "prefix-index-size"
"""``CycleState.data`` key: ``dict[endpoint name, int]``, how many prefix blocks each endpoint is
known to hold (a proxy for how many tenants it already serves). Written by prefix plugins."""

UNCACHED_TOKENS_KEY = "uncached-tokens"
"""``CycleState.data`` key: ``dict[endpoint name, int]``, prompt tokens each endpoint would have
to prefill; the scheduler copies the target's value into ``SchedulingResult.uncached_tokens``."""

LATENCY_UNCACHED_TOKENS_KEY = "latency-uncached-tokens"
"""``CycleState.data`` key: ``dict[endpoint name, int]``, prompt tokens each endpoint is expected
to really prefill, where a prefix plugin estimates that better than the routing view it scores
with (tier-aware ``approx-prefix``: its engine-faithful mirror of the offloaded tier). Latency
predictions prefer it; the scheduler copies the target's value into
``SchedulingResult.latency_uncached_tokens``. Routing and backlog counts keep
``UNCACHED_TOKENS_KEY``."""

TTFT_ESTIMATE_KEY = "ttft-estimate"
"""``CycleState.data`` key: a :class:`~pilothouse.scheduling.types.TtftEstimate` (the best
predicted time to first token and the request's target); written by ``slo-aware``, copied by
the scheduler into ``SchedulingResult.ttft_estimate``."""


@dataclass(slots=True)
class CycleState:
    """Per-cycle scratch space shared by the plugins of one scheduling cycle."""

    now: float
    data: dict[str, object] = field(default_factory=dict)


@runtime_checkable
class Plugin(Protocol):
    """Every plugin has the unique name it was declared with."""

    @property
    def name(self) -> str: ...


@runtime_checkable
class Filter(Plugin, Protocol):
    def filter(
        self, state: CycleState, request: SchedulingRequest, endpoints: Sequence[Endpoint]
    ) -> Sequence[Endpoint]: ...


@runtime_checkable
class Scorer(Plugin, Protocol):
    def score(
        self, state: CycleState, request: SchedulingRequest, endpoints: Sequence[Endpoint]
    ) -> Sequence[float]:
        """One value per endpoint, in the order given; the runner clamps to [0, 1]."""
        ...


@runtime_checkable
class Picker(Plugin, Protocol):
    def pick(
        self, state: CycleState, request: SchedulingRequest, scored: Sequence[ScoredEndpoint]
    ) -> tuple[Endpoint, ...]:
        """Targets in preference order; empty when nothing can be picked."""
        ...


@runtime_checkable
class ProfileHandler(Plugin, Protocol):
    def pick_profiles(
        self,
        state: CycleState,
        request: SchedulingRequest,
        profiles: Sequence[str],
        results: Mapping[str, ProfileResult],
    ) -> Sequence[str]:
        """Profiles to run next given those already run; empty ends the cycle."""
        ...

    def process_results(
        self,
        state: CycleState,
        request: SchedulingRequest,
        results: Mapping[str, ProfileResult],
    ) -> SchedulingResult: ...


@runtime_checkable
class PostSchedule(Plugin, Protocol):
    def post_schedule(
        self, state: CycleState, request: SchedulingRequest, result: SchedulingResult
    ) -> None: ...
