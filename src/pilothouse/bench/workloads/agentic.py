"""``agentic``: tool-call loops whose context grows with every step.

A task picks one of ``agents`` agent kinds (each with its own system prompt and tool
schemas, ``system_tokens``), adds the task (``task_tokens``) and runs
``min_steps..max_steps`` model calls. Each call but the last answers with a tool call
(``call_tokens``); the tool result (``result_tokens``) is appended and the next call is sent
``tool_s`` (mean, exponential) after the previous one completes. The last call writes the
answer (``final_tokens``). A task stops early before its context would pass
``max_context_tokens``. Consecutive calls share all but the last call and result, so
contexts are long, mostly cached and sticky to one replica; lengths are uniform within
``± spread`` of the means.
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
class AgenticParams:
    agents: int = 4
    """Agent kinds, each with its own system prompt and tool schemas."""
    system_tokens: int = 3000
    """System prompt plus tool definitions of an agent kind."""
    task_tokens: int = 400
    """Mean length of the task statement."""
    min_steps: int = 3
    """Fewest model calls per task."""
    max_steps: int = 12
    """Most model calls per task (uniform in between)."""
    call_tokens: int = 150
    """Mean output of a step that calls a tool."""
    result_tokens: int = 1000
    """Mean length of a tool result appended to the context."""
    final_tokens: int = 400
    """Mean output of the last step (the answer)."""
    tool_s: float = 1.0
    """Mean tool latency before the next call (exponential)."""
    max_context_tokens: int = 32000
    """A task ends before its prompt plus output would exceed this."""
    spread: float = 0.5
    """Lengths are uniform in mean x [1 - spread, 1 + spread]."""

    def __post_init__(self) -> None:
        check_positive(self, "agents", "system_tokens", "task_tokens", "min_steps")
        check_positive(self, "call_tokens", "result_tokens", "final_tokens", "tool_s")
        if self.max_steps < self.min_steps:
            raise ValueError("max_steps must be >= min_steps")
        if self.max_context_tokens <= self.system_tokens + 2 * self.task_tokens:
            raise ValueError("max_context_tokens leaves no room for the task")
        check_spread(self.spread)


class AgenticWorkload(SyntheticWorkload[AgenticParams]):
    """See the module docstring."""

    name = "agentic"

    def __init__(self, params: AgenticParams, *, block_size: int, seed: int) -> None:
        super().__init__(params, block_size=block_size, seed=seed)

    @property
    def mean_steps(self) -> float:
        return (self._p.min_steps + self._p.max_steps) / 2

    def shape(self) -> WorkloadShape:
        p = self._p
        step = p.call_tokens + p.result_tokens
        mean_prompt = p.system_tokens + p.task_tokens + step * (self.mean_steps - 1) / 2
        output = (p.call_tokens * (self.mean_steps - 1) + p.final_tokens) / self.mean_steps
        reusable = 1.0 - (step + p.task_tokens / self.mean_steps) / mean_prompt
        return WorkloadShape(mean_prompt, output, max(0.0, reusable))

    def _system(self, index: int) -> PromptBuilder:
        return self._shared_prefix("system", index, self._p.system_tokens)

    def _session(self, number: int) -> Session:
        p = self._p
        rng = child_rng(self._seed, self.name, "task", number)
        agent = rng.randrange(p.agents)
        context = self._system(agent).fork()
        context.extend(random_tokens(rng, spread_length(rng, p.task_tokens, p.spread)))
        steps = rng.randint(p.min_steps, p.max_steps)
        turns: list[Turn] = []
        for j in range(steps):
            call = spread_length(rng, p.call_tokens, p.spread)
            result = spread_length(rng, p.result_tokens, p.spread)
            room = p.max_context_tokens - context.tokens
            final = max(1, min(spread_length(rng, p.final_tokens, p.spread), room))
            last = j == steps - 1 or context.tokens + call + result + final > p.max_context_tokens
            delay = rng.expovariate(1.0 / p.tool_s) if j else 0.0
            prompt = context.build()
            output = final if last else call
            context.extend(random_tokens(rng, output))  # the tool call (or answer) written
            generated = context.block_hashes_from(len(prompt.block_hashes))
            turns.append(Turn(prompt, output, delay, generated))
            if last:
                break
            context.extend(random_tokens(rng, result))  # the tool's result
        return Session(turns, tenant=f"agent-{agent}")

    def requests(
        self, qps: float | None, count: int, arrivals: ArrivalSpec
    ) -> Iterator[SimRequest]:
        if qps is None:
            raise ValueError("agentic needs a QPS")
        rng = child_rng(self._seed, self.name, "arrivals")
        starts = arrival_times(arrivals, qps / self.mean_steps, rng)
        return session_requests("agent", starts, self._session, count)
