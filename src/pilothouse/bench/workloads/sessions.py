"""Closed-loop sessions: a first request at an arrival time, follow-ups after each answer.

A session (a chat, an agent's task) is a list of :class:`Turn`: the first is sent at the
session's arrival time; each later one is a follow-up sent ``delay_s`` after the previous
request *completes* (user think time, tool latency), so it carries ``after``. Sessions start
at the arrival process's times, at ``qps / mean turns per session`` so the request rate
averages ``qps`` while the cluster keeps up; the stream emits each session's follow-ups
right after its first request, as the simulator requires.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from pilothouse.bench.workloads.tokens import Prompt
from pilothouse.sim.cluster_types import SimRequest


@dataclass(frozen=True, slots=True)
class Turn:
    """One request of a session: the whole context so far and the answer length.

    ``output_block_hashes`` continue the prompt's chain over the answer (the full blocks
    after the prompt's own, :attr:`SimRequest.output_block_hashes`), so an engine that caches
    generated blocks (``EngineConfig.cache_generated_blocks``) holds the answer the next turn
    repeats; engines that do not ignore them.
    """

    prompt: Prompt
    output_tokens: int
    delay_s: float = 0.0
    output_block_hashes: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class Session:
    """The turns of one session and the tenant it belongs to."""

    turns: list[Turn]
    tenant: str | None = None


SessionFactory = Callable[[int], Session]
"""Builds session number ``i`` (deterministically)."""


def session_requests(
    prefix: str,
    starts: Iterator[float],
    make_session: SessionFactory,
    count: int,
) -> Iterator[SimRequest]:
    """``count`` requests from consecutive sessions (the last one may be cut short)."""
    emitted = 0
    session = 0
    while emitted < count:
        start = next(starts)
        previous: str | None = None
        built = make_session(session)
        for step, turn in enumerate(built.turns):
            if emitted >= count:
                return
            request_id = f"{prefix}-{session}-{step}"
            yield SimRequest(
                request_id=request_id,
                arrival_s=start if previous is None else turn.delay_s,
                prompt=turn.prompt.text,
                prompt_tokens=turn.prompt.tokens,
                block_hashes=turn.prompt.block_hashes,
                output_tokens=turn.output_tokens,
                max_tokens=turn.output_tokens,
                session_id=f"{prefix}-{session}",
                tenant=built.tenant,
                after=previous,
                output_block_hashes=turn.output_block_hashes,
            )
            previous = request_id
            emitted += 1
        session += 1
