"""Applying a scheduled step: advance sequences, emit tokens, finish requests, count."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from pilothouse.sim.scheduler import BatchScheduler, Schedule
from pilothouse.sim.sequence import Sequence
from pilothouse.sim.types import FinishedRequest, KVEvent, StepResult


@dataclass(frozen=True, slots=True)
class EngineStats:
    """Cumulative counters of one replica (token counts, as vLLM's counters)."""

    prefix_cache_queries: int = 0
    prefix_cache_hits: int = 0
    cpu_cache_hits: int = 0
    """Prompt tokens reloaded from the CPU tier (not counted in ``prefix_cache_hits``, as
    vLLM counts connector hits apart from its own prefix cache)."""
    prompt_tokens: int = 0
    generation_tokens: int = 0
    num_preemptions: int = 0
    steps: int = 0
    iterations: int = 0
    finished: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))


class StepApplier:
    """Turns a :class:`Schedule` into a :class:`StepResult` and keeps the counters."""

    def __init__(self, scheduler: BatchScheduler, *, record_events: bool) -> None:
        self._scheduler = scheduler
        self._record = record_events
        self._counts: Counter[str] = Counter()
        self._finished: Counter[str] = Counter()

    def snapshot(self) -> EngineStats:
        counts = self._counts
        return EngineStats(
            prefix_cache_queries=counts["prefix_cache_queries"],
            prefix_cache_hits=counts["prefix_cache_hits"],
            cpu_cache_hits=counts["cpu_cache_hits"],
            prompt_tokens=counts["prompt_tokens"],
            generation_tokens=counts["generation_tokens"],
            num_preemptions=counts["num_preemptions"],
            steps=counts["steps"],
            iterations=counts["iterations"],
            finished=MappingProxyType(dict(self._finished)),
        )

    def count_finished(self, reason: str) -> None:
        self._finished[reason] += 1

    def apply(self, schedule: Schedule, iterations: int, start: float, end: float) -> StepResult:
        scheduler = self._scheduler
        events: list[KVEvent] = list(schedule.events)
        if iterations > 1:
            scheduler.take_decode_blocks(1, iterations - 1, events)
        decoded = tuple(scheduler.decoders.seqs)
        finished = [
            self._finish(seq, end, events) for seq in scheduler.decoders.advance(iterations)
        ]
        prefilled: dict[str, int] = {}
        first_tokens: list[str] = []
        for seq, tokens in schedule.items:
            if self._advance_prefill(seq, tokens, end, first_tokens):
                prefilled[seq.request_id] = 1
                if seq.generated >= seq.target:
                    finished.append(self._finish(seq, end, events))
        self._count(schedule, iterations, len(decoded) * iterations + len(prefilled))
        return StepResult(
            start=start,
            duration=end - start,
            iterations=iterations,
            prefill_tokens=sum(tokens for _seq, tokens in schedule.items),
            decode_tokens=len(decoded) * iterations,
            decoded=decoded,
            prefilled=prefilled,
            first_tokens=tuple(first_tokens),
            finished=tuple(finished),
            preempted=tuple(seq.request_id for seq in schedule.preempted),
            kv_events=tuple(events) if self._record else (),
        )

    def _advance_prefill(self, seq: Sequence, tokens: int, end: float, first: list[str]) -> bool:
        """Compute a prefill chunk; ``True`` when it completed and sampled a token.

        A sequence that still has tokens to generate joins the decode batch.
        """
        seq.computed += tokens
        if seq.computed < seq.total:
            return False
        seq.generated += 1
        if seq.first_token is None:
            seq.first_token = end
            first.append(seq.request_id)
            self._counts["prompt_tokens"] += seq.req.prompt_tokens
        if seq.generated < seq.target:
            del self._scheduler.prefilling[seq.request_id]
            self._scheduler.decoders.add(seq)
        return True

    def _finish(self, seq: Sequence, end: float, events: list[KVEvent]) -> FinishedRequest:
        """``seq`` generated its last token: it leaves the batch (synced already)."""
        if seq.request_id in self._scheduler.order:
            self._scheduler.retire(seq, events)
        self._finished[seq.req.finish_reason] += 1
        return seq.finished(end)

    def _count(self, schedule: Schedule, iterations: int, generated: int) -> None:
        counts = self._counts
        counts["prefix_cache_queries"] += schedule.prefix_queries
        counts["prefix_cache_hits"] += schedule.prefix_hits
        counts["cpu_cache_hits"] += schedule.cpu_hits
        counts["num_preemptions"] += len(schedule.preempted)
        counts["generation_tokens"] += generated
        counts["steps"] += 1
        counts["iterations"] += iterations
