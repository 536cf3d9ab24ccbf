"""``hot-spot``: shared prefixes where one group carries half of the traffic.

``groups`` prefix groups (a tenant's system prompt of ``prefix_tokens``); each request
picks group 0 with probability ``hot_fraction`` and one of the others uniformly otherwise,
then appends its own random question of ``question_tokens``. Pure cache affinity sends all
of group 0 to one replica, which then saturates: the known failure of every cache-aware
router, and the test of its load escape valve. With the defaults the prefixes total 384 k
tokens: more than one replica of the bundled presets caches, so blind routing also thrashes.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from pilothouse.bench.workloads.arrivals import ArrivalSpec, arrival_times
from pilothouse.bench.workloads.base import (
    SyntheticWorkload,
    WorkloadShape,
    check_positive,
    check_spread,
    child_rng,
    spread_length,
)
from pilothouse.bench.workloads.tokens import PromptBuilder, random_tokens
from pilothouse.sim.cluster_types import SimRequest


@dataclass(frozen=True, slots=True)
class HotSpotParams:
    groups: int = 64
    """Prefix groups (tenants)."""
    prefix_tokens: int = 6000
    """Length of each group's shared prefix."""
    question_tokens: int = 400
    """Mean length of the per-request question (unique)."""
    output_tokens: int = 400
    """Mean answer length."""
    hot_fraction: float = 0.5
    """Share of requests that go to group 0."""
    spread: float = 0.5
    """Question and answer lengths are uniform in mean x [1 - spread, 1 + spread]."""

    def __post_init__(self) -> None:
        check_positive(self, "groups", "prefix_tokens", "question_tokens", "output_tokens")
        if not 0.0 <= self.hot_fraction <= 1.0:
            raise ValueError("hot_fraction must be in [0, 1]")
        check_spread(self.spread)


class HotSpotWorkload(SyntheticWorkload[HotSpotParams]):
    """See the module docstring."""

    name = "hot-spot"

    def __init__(self, params: HotSpotParams, *, block_size: int, seed: int) -> None:
        super().__init__(params, block_size=block_size, seed=seed)

    def shape(self) -> WorkloadShape:
        p = self._p
        prompt = p.prefix_tokens + p.question_tokens
        return WorkloadShape(prompt, p.output_tokens, p.prefix_tokens / prompt)

    def _prefix(self, group: int) -> PromptBuilder:
        return self._shared_prefix("prefix", group, self._p.prefix_tokens)

    def _group(self, rng_value: float, pick: int) -> int:
        p = self._p
        if p.groups == 1 or rng_value < p.hot_fraction:
            return 0
        return 1 + pick % (p.groups - 1)

    def requests(
        self, qps: float | None, count: int, arrivals: ArrivalSpec
    ) -> Iterator[SimRequest]:
        if qps is None:
            raise ValueError("hot-spot needs a QPS")
        p = self._p
        times = arrival_times(arrivals, qps, child_rng(self._seed, self.name, "arrivals"))
        rng = child_rng(self._seed, self.name, "content")
        for i in range(count):
            group = self._group(rng.random(), rng.randrange(1 << 30))
            question = random_tokens(rng, spread_length(rng, p.question_tokens, p.spread))
            prompt = self._prefix(group).fork().extend(question).build()
            output = spread_length(rng, p.output_tokens, p.spread)
            yield SimRequest(
                request_id=f"hot-{i}",
                arrival_s=next(times),
                prompt=prompt.text,
                prompt_tokens=prompt.tokens,
                block_hashes=prompt.block_hashes,
                output_tokens=output,
                max_tokens=output,
                tenant=f"group-{group}",
            )
