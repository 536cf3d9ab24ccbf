"""A vLLM-like engine replica in virtual time: pure, deterministic, no I/O, no clock.

The caller owns time. ``add_request(req, now)`` queues a request; ``begin_step(now)``
schedules the next step and returns when it ends; ``finish_step()`` applies it and returns
a :class:`StepResult`; ``step(now)`` does both at once (what a wall-clock server needs).

With ``max_fused_iterations > 1`` a step whose batch is pure decode (no prefill, nobody
admitted or preempted) fuses up to that many iterations in closed form: it stops at the
iteration where the first request finishes and before the KV cache would run out. A request
added (or aborted) while such a step is in flight cuts it at the first iteration boundary
after ``now`` (the request joins the next iteration, as in a real engine), so
``busy_until`` may move earlier: a discrete-event simulation must then reschedule the
replica's step-end event. Per step the cost is O(prefill chunks + finished requests), not
O(batch): decoding sequences are advanced together (:mod:`pilothouse.sim.decode_batch`).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from pilothouse.sim.config import EngineConfig
from pilothouse.sim.kv_cache import KVBlockPool
from pilothouse.sim.latency import (
    decode_growth,
    fused_duration,
    iteration_time,
    iterations_started_before,
)
from pilothouse.sim.scheduler import BatchScheduler, Schedule
from pilothouse.sim.sequence import Sequence
from pilothouse.sim.stepping import EngineStats, StepApplier
from pilothouse.sim.types import AllBlocksClearedEvent, EngineRequest, KVEvent, StepResult
from pilothouse.sim.waiting import wait_queue


@dataclass(slots=True)
class _Plan:
    start: float
    iterations: int
    first: float
    growth: float
    schedule: Schedule

    @property
    def end(self) -> float:
        return self.start + fused_duration(self.first, self.growth, self.iterations)


class EngineModel:
    """One simulated replica. See the module docstring for the stepping contract."""

    def __init__(
        self,
        config: EngineConfig,
        *,
        seed: int = 0,
        max_fused_iterations: int = 1,
        record_kv_events: bool = True,
    ) -> None:
        if max_fused_iterations < 1:
            raise ValueError("max_fused_iterations must be >= 1")
        self.config = config
        self.pool = KVBlockPool(
            config.num_gpu_blocks,
            config.block_size,
            enable_prefix_caching=config.enable_prefix_caching,
        )
        self._scheduler = BatchScheduler(config, self.pool, record_events=record_kv_events)
        self._applier = StepApplier(self._scheduler, record_events=record_kv_events)
        self._rng = random.Random(seed)
        self._max_fused = max_fused_iterations
        self._waiting = wait_queue(config.scheduling_policy)
        self._seqs: dict[str, Sequence] = {}
        self._aborted: list[Sequence] = []
        self._plan: _Plan | None = None
        self._free_at = float("-inf")

    # -- observable state ----------------------------------------------------------------

    @property
    def num_waiting(self) -> int:
        return len(self._waiting)

    @property
    def num_running(self) -> int:
        return len(self._scheduler.order)

    @property
    def cpu_cached_blocks(self) -> int:
        """Blocks held by the CPU tier (0 without one)."""
        return len(self._scheduler.cpu)

    @property
    def kv_usage(self) -> float:
        """Fraction of KV blocks referenced by requests (0..1), as vLLM reports it."""
        return self.pool.usage

    @property
    def busy_until(self) -> float | None:
        """End of the step in flight, or ``None`` when no step is in flight."""
        return None if self._plan is None else self._plan.end

    @property
    def has_work(self) -> bool:
        return bool(self._scheduler.order or self._waiting)

    @property
    def stats(self) -> EngineStats:
        """Cumulative counters (prefix-cache tokens, prompt/generation tokens, ...)."""
        return self._applier.snapshot()

    @property
    def running_loras(self) -> frozenset[str]:
        return self._scheduler.loras.running

    @property
    def waiting_loras(self) -> frozenset[str]:
        return frozenset(self._scheduler.waiting_loras)

    def __contains__(self, request_id: str) -> bool:
        return request_id in self._seqs

    # -- requests ------------------------------------------------------------------------

    def add_request(self, request: EngineRequest, now: float) -> None:
        """Queue ``request`` (arrived at ``now``); cuts a fused step in flight."""
        if request.request_id in self._seqs:
            raise ValueError(f"duplicate request id {request.request_id!r}")
        if request.prompt_tokens + request.max_tokens > self.config.max_model_len:
            raise ValueError(
                f"prompt ({request.prompt_tokens}) + max_tokens ({request.max_tokens}) "
                f"exceeds max_model_len ({self.config.max_model_len})"
            )
        if request.lora is not None and self.config.max_loras == 0:
            raise ValueError("LoRA requests need max_loras >= 1")
        seq = Sequence(request, now)
        self._seqs[request.request_id] = seq
        self._waiting.push(seq)
        if request.lora is not None:
            self._scheduler.waiting_loras[request.lora] += 1
        self._cut_plan(now)

    def abort_request(self, request_id: str, now: float) -> bool:
        """Drop a request (client went away). Returns whether it was still in the engine."""
        seq = self._seqs.get(request_id)
        if seq is None or seq in self._aborted:
            return False
        if request_id in self._scheduler.order and self._plan is not None:
            self._cut_plan(now)
            self._aborted.append(seq)  # applied when the step in flight finishes
            return True
        del self._seqs[request_id]
        if request_id in self._scheduler.order:
            self._scheduler.retire(seq)
        else:
            self._waiting.remove(seq)
            if seq.lora is not None:
                self._scheduler.unwait_lora(seq.lora)
        self._applier.count_finished("abort")
        return True

    def reset_prefix_cache(self) -> AllBlocksClearedEvent | None:
        """Forget all cached prefixes (both tiers); refused (``None``) while any block is in
        use."""
        if self._plan is not None or not self.pool.clear():
            return None
        self._scheduler.cpu.clear()
        return AllBlocksClearedEvent()

    def take_blocks(self, count: int) -> list[KVEvent]:
        """Allocate ``count`` blocks outside a step (KV received from another replica), with
        the step's eviction rules (LRU, offload to the CPU tier); returns the KV events."""
        if count > self.pool.available_blocks:
            raise ValueError(f"cannot allocate {count} blocks ({self.pool.available_blocks} left)")
        events: list[KVEvent] = []
        self._scheduler.take(count, events)
        return events

    # -- stepping ------------------------------------------------------------------------

    def step(self, now: float) -> StepResult | None:
        """Schedule and apply one step starting at ``now``; ``None`` when idle."""
        return None if self.begin_step(now) is None else self.finish_step()

    def begin_step(self, now: float) -> float | None:
        """Schedule the next step at ``now``; returns its end time (``None`` when idle)."""
        if self._plan is not None:
            raise RuntimeError("a step is already in flight; call finish_step() first")
        if now < self._free_at:
            raise ValueError(f"step at {now} starts before the previous one ended")
        if not self.has_work:
            return None
        schedule = self._scheduler.schedule(self._waiting, now)
        latency = self.config.latency
        decoders = self._scheduler.decoders
        first = iteration_time(
            latency,
            [(tokens, seq.computed) for seq, tokens in schedule.items],
            len(decoders),
            decoders.context_tokens() if decoders else 0,
            lora_loads=schedule.lora_loads,
        )
        if schedule.load_s:  # reloads from the CPU tier (synchronous, before the forward)
            first += schedule.load_s
        iterations = self._fusable_iterations(schedule)
        growth = decode_growth(latency, len(decoders)) if iterations > 1 else 0.0
        if latency.jitter:
            factor = max(0.25, self._rng.gauss(1.0, latency.jitter))
            first, growth = first * factor, growth * factor
        self._plan = _Plan(now, iterations, first, growth, schedule)
        return self._plan.end

    def finish_step(self) -> StepResult:
        """Apply the step in flight at its end time and report what it did."""
        plan = self._plan
        if plan is None:
            raise RuntimeError("no step in flight; call begin_step() first")
        self._plan = None
        end = self._free_at = plan.end
        result = self._applier.apply(plan.schedule, plan.iterations, plan.start, end)
        for finished in result.finished:
            del self._seqs[finished.request_id]
        for seq in self._aborted:
            if seq.request_id in self._scheduler.order:
                self._scheduler.retire(seq)
                self._applier.count_finished("abort")
                del self._seqs[seq.request_id]
        self._aborted.clear()
        return result

    # -- internals -----------------------------------------------------------------------

    def _cut_plan(self, now: float) -> None:
        plan = self._plan
        if plan is not None and plan.iterations > 1:
            plan.iterations = iterations_started_before(
                plan.first, plan.growth, plan.iterations, now - plan.start
            )

    def _fusable_iterations(self, schedule: Schedule) -> int:
        """How many decode iterations this step may fuse (1 unless it is pure decode)."""
        if self._max_fused == 1 or schedule.items or schedule.preempted:
            return 1
        decoders = self._scheduler.decoders
        limit = min(self._max_fused, decoders.iterations_to_first_finish())
        return decoders.fitting_iterations(limit, self.pool.available_blocks)
