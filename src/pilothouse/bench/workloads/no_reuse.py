"""``no-reuse``: independent random prompts; nothing is shared, so no cache can help.

Each prompt is ``prompt_tokens`` random tokens and each answer ``output_tokens`` long, both
drawn uniformly within ``± spread`` of the mean. Prefix-aware routing has nothing to gain
here and should match plain load balancing (llm-d's "low-prefix workload: no difference").
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
class NoReuseParams:
    prompt_tokens: int = 1000
    """Mean prompt length."""
    output_tokens: int = 200
    """Mean answer length."""
    spread: float = 0.5
    """Lengths are uniform in mean x [1 - spread, 1 + spread]."""

    def __post_init__(self) -> None:
        check_positive(self, "prompt_tokens", "output_tokens")
        check_spread(self.spread)


class NoReuseWorkload(SyntheticWorkload[NoReuseParams]):
    """See the module docstring."""

    name = "no-reuse"

    def shape(self) -> WorkloadShape:
        return WorkloadShape(self._p.prompt_tokens, self._p.output_tokens, 0.0)

    def requests(
        self, qps: float | None, count: int, arrivals: ArrivalSpec
    ) -> Iterator[SimRequest]:
        if qps is None:
            raise ValueError("no-reuse needs a QPS")
        p = self._p
        times = arrival_times(arrivals, qps, child_rng(self._seed, self.name, "arrivals"))
        rng = child_rng(self._seed, self.name, "content")
        for i in range(count):
            tokens = random_tokens(rng, spread_length(rng, p.prompt_tokens, p.spread))
            prompt = PromptBuilder(self._block_size).extend(tokens).build()
            output = spread_length(rng, p.output_tokens, p.spread)
            yield SimRequest(
                request_id=f"noreuse-{i}",
                arrival_s=next(times),
                prompt=prompt.text,
                prompt_tokens=prompt.tokens,
                block_hashes=prompt.block_hashes,
                output_tokens=output,
                max_tokens=output,
            )
