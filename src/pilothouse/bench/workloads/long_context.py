"""``long-context``: conversations about long documents, whose prefixes recur minutes apart.

The shape of Mooncake's published traces (long inputs, reuse at long distances) rather
than a chat app's: ``documents`` long documents (a code base, a contract, a report), each of
a heavy-tailed length, from ``min_prompt_tokens`` to ``max_prompt_tokens`` (a bounded
Pareto with shape ``tail_alpha``: with the defaults half are under ~9,500 tokens, one in ten
over ~34,000, the mean is ~15,800). A conversation picks a document uniformly and asks
``min_turns..max_turns`` questions about it; each turn sends the document, every earlier
question and answer and the new question (``user_tokens``, answered with ``answer_tokens``),
and the next turn comes ``think_s`` (mean, exponential: minutes) later. A conversation stops
before its prompt would pass ``max_prompt_tokens``.

So a prefix comes back minutes after it was last used: the next turn of its conversation,
or another conversation about the same document (with ``documents`` of them, a document
recurs every ``documents x mean turns / QPS`` seconds on average). The documents together
are larger than a fleet's GPU KV cache at the defaults (~4 M tokens for 256 documents
against 442 k tokens per ``llama-3.1-8b-h100`` replica), so whether a returning prefix is
still cached, and where, decides its TTFT: the workload for an offloading tier. Prompts up
to 100 k tokens need a model whose context holds them (``llama-3.1-8b-h100``: 131 k; with
``qwen3-32b-tp2-h100``, 40 k, set ``max_prompt_tokens``).

**Open loop, stationary from time 0.** Turns are timed from the previous turn's arrival, not
its completion (a think time of minutes dwarfs the latency), so every request is an
independent arrival. Conversations start at ``QPS / mean turns`` per second from
:data:`LEAD_IN_SPANS` x ``(max_turns - 1) x think_s`` before time 0, and only the turns at
or after 0 are sent: the run begins with conversations already under way and the request
rate is the QPS asked for from the start, rather than ramping up over the first conversations'
lifetime (which, at minutes per turn, would be most of a run). With ``--arrival diurnal`` the
swing's phase is shifted by that lead-in.
"""

from __future__ import annotations

import heapq
import math
import random
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
class LongContextParams:
    documents: int = 256
    """Long documents; each conversation is about one, picked uniformly."""
    min_prompt_tokens: int = 5000
    """Shortest document (so the shortest prompt)."""
    max_prompt_tokens: int = 100_000
    """Longest document and longest prompt (a conversation stops before passing it)."""
    tail_alpha: float = 1.0
    """Shape of the bounded Pareto document length; smaller is heavier-tailed."""
    user_tokens: int = 200
    """Mean length of a question."""
    answer_tokens: int = 300
    """Mean length of an answer (the output of each turn)."""
    min_turns: int = 1
    """Fewest turns per conversation."""
    max_turns: int = 6
    """Most turns per conversation (uniform in between)."""
    think_s: float = 180.0
    """Mean time between an answer and the next question (exponential)."""
    spread: float = 0.5
    """Question and answer lengths are uniform in mean x [1 - spread, 1 + spread]."""

    def __post_init__(self) -> None:
        check_positive(self, "documents", "min_prompt_tokens", "tail_alpha", "user_tokens")
        check_positive(self, "answer_tokens", "min_turns", "think_s")
        if self.max_turns < self.min_turns:
            raise ValueError("max_turns must be >= min_turns")
        if self.max_prompt_tokens < self.min_prompt_tokens + 4 * self.user_tokens:
            raise ValueError("max_prompt_tokens leaves no room above min_prompt_tokens")
        check_spread(self.spread)


def bounded_pareto(rng: random.Random, low: float, high: float, alpha: float) -> float:
    """A draw from the Pareto distribution of shape ``alpha`` truncated to [low, high]
    (inverse CDF: heavy-tailed, yet every value is a length the model accepts)."""
    ratio = math.pow(low / high, alpha)
    u = rng.random()
    return low / math.pow(1.0 - u * (1.0 - ratio), 1.0 / alpha)


def bounded_pareto_mean(low: float, high: float, alpha: float) -> float:
    """The mean of :func:`bounded_pareto`'s distribution."""
    if math.isclose(alpha, 1.0):
        return high * low / (high - low) * math.log(high / low)
    scale = math.pow(low, alpha) / (1.0 - math.pow(low / high, alpha))
    tail = math.pow(low, 1.0 - alpha) - math.pow(high, 1.0 - alpha)
    return scale * alpha / (alpha - 1.0) * tail


LEAD_IN_SPANS = 2.0
"""Conversations start this many longest think-time spans before time 0."""


class LongContextWorkload(SyntheticWorkload[LongContextParams]):
    """See the module docstring."""

    name = "long-context"

    def __init__(self, params: LongContextParams, *, block_size: int, seed: int) -> None:
        super().__init__(params, block_size=block_size, seed=seed)

    @property
    def mean_turns(self) -> float:
        return (self._p.min_turns + self._p.max_turns) / 2

    def document_tokens(self, index: int) -> int:
        """The length of document ``index``: its own seeded draw, the same on every call."""
        p = self._p
        rng = child_rng(self._seed, self.name, "document-length", index)
        room = p.max_prompt_tokens - math.ceil(p.user_tokens * (1.0 + p.spread))
        drawn = bounded_pareto(rng, p.min_prompt_tokens, p.max_prompt_tokens, p.tail_alpha)
        return min(round(drawn), room)

    def shape(self) -> WorkloadShape:
        p = self._p
        document = bounded_pareto_mean(p.min_prompt_tokens, p.max_prompt_tokens, p.tail_alpha)
        exchange = p.user_tokens + p.answer_tokens
        prompts = reused = 0.0
        turn_counts = range(p.min_turns, p.max_turns + 1)
        for turns in turn_counts:
            for j in range(turns):
                prompt = document + j * exchange + p.user_tokens
                prompts += prompt
                # the document has been seen before (documents << conversations); a later
                # turn also finds the previous turn's prompt
                reused += document if j == 0 else prompt - exchange
        return WorkloadShape(prompts / sum(turn_counts), p.answer_tokens, reused / prompts)

    def _document(self, index: int) -> PromptBuilder:
        return self._shared_prefix("document", index, self.document_tokens(index))

    def lead_in_s(self) -> float:
        """How long before time 0 conversations start (see the module docstring)."""
        return LEAD_IN_SPANS * (self._p.max_turns - 1) * self._p.think_s

    def requests(
        self, qps: float | None, count: int, arrivals: ArrivalSpec
    ) -> Iterator[SimRequest]:
        if qps is None:
            raise ValueError("long-context needs a QPS")
        rng = child_rng(self._seed, self.name, "arrivals")
        starts = arrival_times(arrivals, qps / self.mean_turns, rng)
        lead = self.lead_in_s()
        pending: list[tuple[float, int, _Conversation]] = []
        number = 0
        next_start = next(starts) - lead
        emitted = 0
        while emitted < count:
            while not pending or next_start <= pending[0][0]:
                rng = child_rng(self._seed, self.name, "conversation", number)
                document = rng.randrange(self._p.documents)
                context = self._document(document).fork()
                conversation = _Conversation(self._p, rng, document, context, number, next_start)
                heapq.heappush(pending, (conversation.at, number, conversation))
                number += 1
                next_start = next(starts) - lead
            at, key, conversation = heapq.heappop(pending)
            request = conversation.take(build=at >= 0.0)
            if request is not None:
                yield request
                emitted += 1
            if not conversation.done:
                heapq.heappush(pending, (conversation.at, key, conversation))


class _Conversation:
    """One conversation, one turn at a time: its next turn's time is known before the turn's
    prompt is built (so conversations merge in time order holding one context each)."""

    __slots__ = (
        "_context",
        "_p",
        "_rng",
        "_turns",
        "answer",
        "at",
        "document",
        "done",
        "id",
        "turn",
    )

    def __init__(
        self,
        params: LongContextParams,
        rng: random.Random,
        document: int,
        context: PromptBuilder,
        number: int,
        start: float,
    ) -> None:
        self._p = params
        self._rng = rng
        self.document = document
        self._turns = rng.randint(params.min_turns, params.max_turns)
        self._context = context
        self.id = f"long-{number}"
        self.at = start
        self.turn = 0
        self.answer = 0
        self.done = False
        self._prepare()

    def _prepare(self) -> None:
        """Draw the next question (and its answer's length), or end the conversation."""
        p, rng = self._p, self._rng
        question = spread_length(rng, p.user_tokens, p.spread)
        if self.turn >= self._turns or (
            self.turn and self._context.tokens + question > p.max_prompt_tokens
        ):
            self.done = True
            return
        self._context.extend(random_tokens(rng, question))
        self.answer = spread_length(rng, p.answer_tokens, p.spread)

    def take(self, *, build: bool) -> SimRequest | None:
        """The current turn as a request (``None`` when not ``build``: a turn before time 0),
        then the next one drawn: its question after the answer, ``think_s`` later."""
        request = None
        prompt = self._context.build() if build else None
        self._context.extend(random_tokens(self._rng, self.answer))  # what the model said
        if prompt is not None:
            request = SimRequest(
                request_id=f"{self.id}-{self.turn}",
                arrival_s=self.at,
                prompt=prompt.text,
                prompt_tokens=prompt.tokens,
                block_hashes=prompt.block_hashes,
                output_tokens=self.answer,
                max_tokens=self.answer,
                session_id=self.id,
                tenant=f"document-{self.document}",
                output_block_hashes=self._context.block_hashes_from(len(prompt.block_hashes)),
            )
        self.at += self._rng.expovariate(1.0 / self._p.think_s)
        self.turn += 1
        self._prepare()
        return request
