"""``mixed-priority``: interactive and batch tenants sharing one fleet.

One arrival stream at the requested QPS; each request is interactive with probability
``interactive_share``, batch otherwise, and belongs to one of that class's tenants
(``interactive_tenants`` / ``batch_tenants``, uniformly). Every tenant has its own
``system_tokens`` system prompt, so prefix caching pays within a tenant.

- **interactive** (``interactive-N``): a short question (``interactive_prompt_tokens``), a
  short answer (``interactive_output_tokens``); priority ``interactive_priority``, TTFT
  target ``interactive_ttft_slo_s`` (a chat or autocomplete user waiting).
- **batch** (``batch-N``): a long unique input (``batch_prompt_tokens``, a document to
  summarise or a record to extract from) and a long output (``batch_output_tokens``);
  priority ``batch_priority``, no latency target (throughput is what it needs).

Priorities follow the gateway's convention (higher is more important: flow control serves
the highest first). The class is carried in the request's ``tenant``, the field flow control
groups by, and its priority in ``SimRequest.priority`` (what the scheduler and, under the
engine's ``priority`` scheduling policy, the engine act on);
:meth:`MixedPriorityWorkload.objective` maps a request to its class's priority and TTFT
target, and :meth:`MixedPriorityWorkload.priority_classes` describes both classes for the
per-class report of ``bench sim`` (issue #16). Interactive requests
dominate the count and batch ones the tokens: at the defaults, 80 % of the requests but
under 30 % of the generated tokens are interactive, so a fleet run past capacity is
overloaded by batch work that can wait.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from pilothouse.bench.workloads.arrivals import ArrivalSpec, arrival_times
from pilothouse.bench.workloads.base import (
    PriorityClass,
    SyntheticWorkload,
    WorkloadShape,
    check_positive,
    check_spread,
    child_rng,
    spread_length,
)
from pilothouse.bench.workloads.tokens import random_tokens
from pilothouse.sim.cluster_types import SimRequest

INTERACTIVE = "interactive"
BATCH = "batch"


@dataclass(frozen=True, slots=True)
class MixedPriorityParams:
    interactive_share: float = 0.8
    """Share of requests that are interactive (the rest are batch)."""
    interactive_tenants: int = 4
    """Interactive tenants (``interactive-0`` ...), each with its own system prompt."""
    batch_tenants: int = 2
    """Batch tenants (``batch-0`` ...), each with its own system prompt."""
    system_tokens: int = 1000
    """Length of each tenant's system prompt."""
    interactive_prompt_tokens: int = 200
    """Mean length of an interactive question (after the system prompt)."""
    interactive_output_tokens: int = 100
    """Mean output of an interactive request."""
    batch_prompt_tokens: int = 3000
    """Mean length of a batch request's own input (after the system prompt)."""
    batch_output_tokens: int = 1000
    """Mean output of a batch request."""
    interactive_priority: int = 1
    """Priority of interactive requests (higher is served first)."""
    batch_priority: int = 0
    """Priority of batch requests."""
    interactive_ttft_slo_s: float = 0.5
    """TTFT target of interactive requests, seconds (batch has none)."""
    spread: float = 0.5
    """Lengths are uniform in mean x [1 - spread, 1 + spread]."""

    def __post_init__(self) -> None:
        if not 0.0 <= self.interactive_share <= 1.0:
            raise ValueError("interactive_share must be in [0, 1]")
        check_positive(self, "interactive_tenants", "batch_tenants", "system_tokens")
        check_positive(self, "interactive_prompt_tokens", "interactive_output_tokens")
        check_positive(self, "batch_prompt_tokens", "batch_output_tokens")
        check_positive(self, "interactive_ttft_slo_s")
        if self.interactive_priority <= self.batch_priority:
            raise ValueError("interactive_priority must be > batch_priority")
        check_spread(self.spread)


@dataclass(frozen=True, slots=True)
class Objective:
    """What a request's class asks of the fleet."""

    priority: int
    ttft_slo_s: float | None


class MixedPriorityWorkload(SyntheticWorkload[MixedPriorityParams]):
    """See the module docstring."""

    name = "mixed-priority"

    def __init__(self, params: MixedPriorityParams, *, block_size: int, seed: int) -> None:
        super().__init__(params, block_size=block_size, seed=seed)

    def shape(self) -> WorkloadShape:
        p = self._p
        share = p.interactive_share
        prompt = p.system_tokens + (
            share * p.interactive_prompt_tokens + (1.0 - share) * p.batch_prompt_tokens
        )
        output = share * p.interactive_output_tokens + (1.0 - share) * p.batch_output_tokens
        return WorkloadShape(prompt, output, p.system_tokens / prompt)

    def priority_classes(self) -> tuple[PriorityClass, ...]:
        """Interactive (with its TTFT target), then batch (without one)."""
        p = self._p
        interactive = p.system_tokens + p.interactive_prompt_tokens
        batch = p.system_tokens + p.batch_prompt_tokens
        return (
            PriorityClass(
                INTERACTIVE,
                p.interactive_priority,
                p.interactive_share,
                interactive,
                p.interactive_output_tokens,
                p.system_tokens / interactive,
                p.interactive_ttft_slo_s,
            ),
            PriorityClass(
                BATCH,
                p.batch_priority,
                1.0 - p.interactive_share,
                batch,
                p.batch_output_tokens,
                p.system_tokens / batch,
                None,
            ),
        )

    def objective(self, request: SimRequest) -> Objective:
        """The priority and TTFT target of ``request``'s class (from its tenant)."""
        p = self._p
        if (request.tenant or "").startswith(f"{INTERACTIVE}-"):
            return Objective(p.interactive_priority, p.interactive_ttft_slo_s)
        return Objective(p.batch_priority, None)

    def requests(
        self, qps: float | None, count: int, arrivals: ArrivalSpec
    ) -> Iterator[SimRequest]:
        if qps is None:
            raise ValueError("mixed-priority needs a QPS")
        p = self._p
        times = arrival_times(arrivals, qps, child_rng(self._seed, self.name, "arrivals"))
        for i in range(count):
            rng = child_rng(self._seed, self.name, "request", i)
            if rng.random() < p.interactive_share:
                kind, tenants = INTERACTIVE, p.interactive_tenants
                own, output = p.interactive_prompt_tokens, p.interactive_output_tokens
            else:
                kind, tenants = BATCH, p.batch_tenants
                own, output = p.batch_prompt_tokens, p.batch_output_tokens
            tenant = rng.randrange(tenants)
            prompt = self._shared_prefix(f"system-{kind}", tenant, p.system_tokens).fork()
            prompt.extend(random_tokens(rng, spread_length(rng, own, p.spread)))
            built = prompt.build()
            tokens = spread_length(rng, output, p.spread)
            yield SimRequest(
                request_id=f"{kind}-{i}",
                arrival_s=next(times),
                prompt=built.text,
                prompt_tokens=built.tokens,
                block_hashes=built.block_hashes,
                output_tokens=tokens,
                max_tokens=tokens,
                tenant=f"{kind}-{tenant}",
                priority=p.interactive_priority if kind == INTERACTIVE else p.batch_priority,
            )
