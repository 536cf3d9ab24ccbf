"""``b2b-saas``: llm-d's shared-prefix "B2B SaaS" benchmark shape.

``groups`` tenants each have a system prompt of ``system_prompt_tokens``; each tenant has
``users_per_group`` users, each with one question of ``question_tokens``; every answer is
``output_tokens`` long. As inference-perf's ``shared_prefix`` data generator (which llm-d's
benchmarks run), the ``groups x users_per_group`` prompts are generated once, shuffled
once, and then sent in that order over and over, so every prompt repeats exactly. The
defaults are llm-d's (150 x 6,000-token system prompts, 5 users, 1,200-token questions,
1,000-token outputs: /work/shared/reference/benchmarks.md rows 1 and 3): the distinct
prompt tokens are 150 x 6,000 + 750 x 1,200 = 1.8 M, about 73 % of the KV cache of
8 x qwen3-32b-tp2-h100 replicas.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from pilothouse.bench.workloads.arrivals import ArrivalSpec, arrival_times
from pilothouse.bench.workloads.base import (
    SyntheticWorkload,
    WorkloadShape,
    check_positive,
    child_rng,
)
from pilothouse.bench.workloads.tokens import Prompt, random_tokens
from pilothouse.sim.cluster_types import SimRequest


@dataclass(frozen=True, slots=True)
class B2bSaasParams:
    groups: int = 150
    """Tenants, each with its own system prompt."""
    users_per_group: int = 5
    """Users per tenant; each user has one fixed question."""
    system_prompt_tokens: int = 6000
    """Length of each tenant's shared system prompt."""
    question_tokens: int = 1200
    """Length of each user's question."""
    output_tokens: int = 1000
    """Generated tokens per request (max_tokens, as with ignore_eos)."""

    def __post_init__(self) -> None:
        check_positive(self, "groups", "users_per_group", "system_prompt_tokens")
        check_positive(self, "question_tokens", "output_tokens")


class B2bSaasWorkload(SyntheticWorkload[B2bSaasParams]):
    """See the module docstring."""

    name = "b2b-saas"

    def __init__(self, params: B2bSaasParams, *, block_size: int, seed: int) -> None:
        super().__init__(params, block_size=block_size, seed=seed)
        order = list(range(params.groups * params.users_per_group))
        child_rng(seed, self.name, "order").shuffle(order)
        self._order = order
        self._prompts: dict[int, Prompt] = {}

    def shape(self) -> WorkloadShape:
        p = self._p
        # Every prompt repeats: an unbounded cache serves all of it after its first use.
        return WorkloadShape(p.system_prompt_tokens + p.question_tokens, p.output_tokens, 1.0)

    def _prompt(self, index: int) -> Prompt:
        prompt = self._prompts.get(index)
        if prompt is None:
            group, user = divmod(index, self._p.users_per_group)
            prefix = self._shared_prefix("system", group, self._p.system_prompt_tokens)
            rng = child_rng(self._seed, self.name, "question", group, user)
            question = random_tokens(rng, self._p.question_tokens)
            prompt = self._prompts[index] = prefix.fork().extend(question).build()
        return prompt

    def requests(
        self, qps: float | None, count: int, arrivals: ArrivalSpec
    ) -> Iterator[SimRequest]:
        if qps is None:
            raise ValueError("b2b-saas needs a QPS")
        users = self._p.users_per_group
        output = self._p.output_tokens
        times = arrival_times(arrivals, qps, child_rng(self._seed, self.name, "arrivals"))
        for i in range(count):
            index = self._order[i % len(self._order)]
            prompt = self._prompt(index)
            group, user = divmod(index, users)
            yield SimRequest(
                request_id=f"b2b-{i}",
                arrival_s=next(times),
                prompt=prompt.text,
                prompt_tokens=prompt.tokens,
                block_hashes=prompt.block_hashes,
                output_tokens=output,
                max_tokens=output,
                session_id=f"group-{group}/user-{user}",
                tenant=f"group-{group}",
            )
