"""``cache-aware-sglang`` picker: the SGLang router's ``cache_aware`` policy, as a baseline.

The rule (sgl-project/sglang ``sgl-router/src/policies/cache_aware.rs``; vllm-project/router
ships the same policy) ignores scores and decides from the gateway's own in-flight counts
(``Endpoint.in_flight``, the router's "load") and an approximate radix tree of the prompt
text routed to each endpoint:

1. The load is *imbalanced* when ``max - min > balance_abs_threshold`` **and**
   ``max > min * balance_rel_threshold`` over the candidates: pick the least loaded.
2. Otherwise find the longest prefix of the prompt in the tree. If the matched fraction of
   characters is above ``cache_threshold``, pick the endpoint holding it; else pick the
   endpoint whose tree holds the fewest characters (the most free cache, by that guess).
3. After the cycle (``post_schedule``) the prompt is recorded under the primary target. Every
   ``eviction_interval_s`` of scheduler time each endpoint's history is trimmed to
   ``max_tree_size`` characters, least recently used leaves first.

Ties pick the first candidate in the order given. Fallback targets (for retries) are the
other candidates, least loaded first. See ``docs/plugins/cache-aware-sglang.md`` for the
published thresholds and where each comes from.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from pydantic import Field

from pilothouse.scheduling.context import PluginContext
from pilothouse.scheduling.interfaces import CycleState
from pilothouse.scheduling.plugins.base import NamedPlugin, PickerParameters
from pilothouse.scheduling.plugins.pickers._approx_tree import ApproxTree
from pilothouse.scheduling.types import (
    Endpoint,
    SchedulingRequest,
    SchedulingResult,
    ScoredEndpoint,
)
from pilothouse.scheduling.validation import parse_parameters


class CacheAwareSglangParameters(PickerParameters):
    cache_threshold: float = Field(default=0.5, ge=0.0, le=1.0)
    balance_abs_threshold: int = Field(default=32, ge=0)
    balance_rel_threshold: float = Field(default=1.0001, ge=1.0)
    eviction_interval_s: float = Field(default=60.0, gt=0.0)
    max_tree_size: int = Field(default=2**24, gt=0)


def _in_flight(endpoint: Endpoint) -> int:
    return endpoint.in_flight


def is_imbalanced(loads: Sequence[int], abs_threshold: int, rel_threshold: float) -> bool:
    """The router's test: both the absolute and the relative gap are exceeded."""
    high, low = max(loads), min(loads)
    return high - low > abs_threshold and high > low * rel_threshold


class CacheAwareSglangPicker(NamedPlugin):
    """Picker and post-schedule hook; keeps one approximate tree for all endpoints."""

    __slots__ = ("_next_eviction", "_p", "_tree")

    def __init__(self, name: str, parameters: CacheAwareSglangParameters | None = None) -> None:
        super().__init__(name)
        self._p = parameters or CacheAwareSglangParameters()
        self._tree = ApproxTree()
        self._next_eviction: float | None = None

    @classmethod
    def create(
        cls, name: str, parameters: Mapping[str, object], ctx: PluginContext
    ) -> CacheAwareSglangPicker:
        return cls(name, parse_parameters(CacheAwareSglangParameters, parameters))

    @property
    def tree(self) -> ApproxTree:
        """The routing history (read it in tests; do not mutate)."""
        return self._tree

    def pick(
        self, state: CycleState, request: SchedulingRequest, scored: Sequence[ScoredEndpoint]
    ) -> tuple[Endpoint, ...]:
        if not scored:
            return ()
        candidates = [s.endpoint for s in scored]
        chosen = self._choose(state.now, request.prompt, candidates)
        rest = sorted((e for e in candidates if e is not chosen), key=_in_flight)
        return (chosen, *rest)[: self._p.max_targets]

    def post_schedule(
        self, state: CycleState, request: SchedulingRequest, result: SchedulingResult
    ) -> None:
        now = state.now
        self._tree.insert(request.prompt, result.target.name, now)
        if self._next_eviction is None:
            self._next_eviction = now + self._p.eviction_interval_s
        elif now >= self._next_eviction:
            self._tree.evict(self._p.max_tree_size)
            self._next_eviction = now + self._p.eviction_interval_s

    def _choose(self, now: float, prompt: str, candidates: list[Endpoint]) -> Endpoint:
        p = self._p
        tree = self._tree
        for endpoint in candidates:
            tree.add_tenant(endpoint.name, now)
        loads = [e.in_flight for e in candidates]
        if is_imbalanced(loads, p.balance_abs_threshold, p.balance_rel_threshold):
            return min(candidates, key=_in_flight)
        if prompt:
            matched, holder = tree.prefix_match(prompt, now)
            if holder is not None and matched / len(prompt) > p.cache_threshold:
                for endpoint in candidates:
                    if endpoint.name == holder:
                        return endpoint
        smallest = tree.smallest([e.name for e in candidates])
        return next(e for e in candidates if e.name == smallest)
