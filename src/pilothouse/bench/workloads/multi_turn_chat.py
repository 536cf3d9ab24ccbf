"""``multi-turn-chat``: chat sessions whose context grows by one exchange per turn.

A session picks one of ``system_prompts`` system prompts (an application's), then runs
``min_turns..max_turns`` turns. Turn ``j`` sends the whole conversation so far: the system
prompt, every earlier user message and answer, and the new user message; the next turn is
sent ``think_s`` (mean, exponential) after the answer completes. Each turn shares with the
previous one everything but the last answer and the new message, so session affinity and
prefix-aware routing both pay off. Lengths are uniform within ``± spread`` of the means.
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
from pilothouse.bench.workloads.sessions import Session, Turn, session_requests
from pilothouse.bench.workloads.tokens import PromptBuilder, random_tokens
from pilothouse.sim.cluster_types import SimRequest


@dataclass(frozen=True, slots=True)
class MultiTurnChatParams:
    system_prompts: int = 10
    """Distinct system prompts (applications); each session uses one."""
    system_tokens: int = 1000
    """Length of each system prompt."""
    user_tokens: int = 200
    """Mean length of a user message."""
    answer_tokens: int = 300
    """Mean length of an answer (the output of each turn)."""
    min_turns: int = 2
    """Fewest turns per session."""
    max_turns: int = 10
    """Most turns per session (uniform in between)."""
    think_s: float = 5.0
    """Mean time between an answer and the next user message (exponential)."""
    spread: float = 0.5
    """Message lengths are uniform in mean x [1 - spread, 1 + spread]."""

    def __post_init__(self) -> None:
        check_positive(self, "system_prompts", "system_tokens", "user_tokens", "answer_tokens")
        check_positive(self, "min_turns", "think_s")
        if self.max_turns < self.min_turns:
            raise ValueError("max_turns must be >= min_turns")
        check_spread(self.spread)


class MultiTurnChatWorkload(SyntheticWorkload[MultiTurnChatParams]):
    """See the module docstring."""

    name = "multi-turn-chat"

    def __init__(self, params: MultiTurnChatParams, *, block_size: int, seed: int) -> None:
        super().__init__(params, block_size=block_size, seed=seed)

    @property
    def mean_turns(self) -> float:
        return (self._p.min_turns + self._p.max_turns) / 2

    def shape(self) -> WorkloadShape:
        p = self._p
        prompts = reused = 0.0
        turn_counts = range(p.min_turns, p.max_turns + 1)
        for turns in turn_counts:
            for j in range(turns):  # turn j carries j earlier exchanges
                prompt = p.system_tokens + j * (p.user_tokens + p.answer_tokens) + p.user_tokens
                prompts += prompt
                # the previous prompt is cached; the last answer and the new message are not
                reused += p.system_tokens if j == 0 else prompt - p.user_tokens - p.answer_tokens
        requests = sum(turn_counts)
        return WorkloadShape(prompts / requests, p.answer_tokens, reused / prompts)

    def _system(self, index: int) -> PromptBuilder:
        return self._shared_prefix("system", index, self._p.system_tokens)

    def _session(self, number: int) -> Session:
        p = self._p
        rng = child_rng(self._seed, self.name, "session", number)
        app = rng.randrange(p.system_prompts)
        context = self._system(app).fork()
        turns: list[Turn] = []
        for j in range(rng.randint(p.min_turns, p.max_turns)):
            context.extend(random_tokens(rng, spread_length(rng, p.user_tokens, p.spread)))
            answer = spread_length(rng, p.answer_tokens, p.spread)
            delay = rng.expovariate(1.0 / p.think_s) if j else 0.0
            prompt = context.build()
            context.extend(random_tokens(rng, answer))  # what the model answered
            output = context.block_hashes_from(len(prompt.block_hashes))
            turns.append(Turn(prompt, answer, delay, output))
        return Session(turns, tenant=f"app-{app}")

    def requests(
        self, qps: float | None, count: int, arrivals: ArrivalSpec
    ) -> Iterator[SimRequest]:
        if qps is None:
            raise ValueError("multi-turn-chat needs a QPS")
        rng = child_rng(self._seed, self.name, "arrivals")
        starts = arrival_times(arrivals, qps / self.mean_turns, rng)
        return session_requests("chat", starts, self._session, count)
