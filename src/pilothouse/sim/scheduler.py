"""One scheduling pass of a vLLM-v1-style continuous-batching scheduler.

Per step, with a token budget of ``max_num_batched_tokens`` (>= ``max_num_seqs``):

1. Every decoding request takes 1 token (decodes first, as a chunked-prefill scheduler
   prioritises them). When their new KV blocks do not fit, a running request is preempted
   (recompute: blocks released, back to the waiting queue) until they do: the *last
   admitted* one, or under the ``priority`` policy the one of the highest ``priority`` value
   (the least important, vLLM's order), latest arrival first.
2. Requests still in prefill, in admission order, take ``min(remaining, budget)`` tokens
   (chunked prefill); when a chunk's blocks do not fit, the last admitted running request is
   preempted, possibly the request itself.
3. Only if nobody was preempted (or the batch is empty), waiting requests in the queue's
   order (:mod:`pilothouse.sim.waiting`: FCFS, or by priority then arrival) while
   the budget lasts and fewer than ``max_num_seqs`` run: the longest cached prefix is reused
   (at least one token is always computed), the rest is prefilled in a chunk. A request
   whose LoRA would exceed ``max_loras`` adapters in the batch is skipped (it keeps its
   place); a request whose blocks do not fit stops admission.

Full prompt blocks are registered in the prefix cache when allocated, as vLLM does, so a
request admitted later in the same pass already hits them.

With a CPU tier (:mod:`pilothouse.sim.cpu_tier`), the blocks the GPU pool evicts are offloaded
there, and admission reloads the prompt blocks that follow the GPU hit from it: they take
fresh GPU blocks and count as computed, and their transfer time (``Schedule.load_s``) is
added to the step. With ``cache_generated_blocks``, a finishing request registers its full
generated blocks before releasing them (:meth:`BatchScheduler.retire`).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from pilothouse.sim.config import PRIORITY, EngineConfig
from pilothouse.sim.cpu_tier import CpuTier
from pilothouse.sim.decode_batch import DecodeBatch
from pilothouse.sim.kv_cache import KVBlockPool
from pilothouse.sim.lora import LoraSlots
from pilothouse.sim.sequence import Sequence
from pilothouse.sim.types import MEDIUM_CPU, BlocksRemoved, BlocksStored, KVEvent
from pilothouse.sim.waiting import WaitQueue


@dataclass(slots=True)
class Schedule:
    """The work of one step: prefill chunks ``(sequence, new tokens)`` plus all decodes."""

    items: list[tuple[Sequence, int]] = field(default_factory=list)
    decode_seqs: int = 0
    admitted: int = 0
    preempted: list[Sequence] = field(default_factory=list)
    lora_loads: int = 0
    events: list[KVEvent] = field(default_factory=list)
    prefix_queries: int = 0
    prefix_hits: int = 0
    cpu_hits: int = 0  # prompt tokens reloaded from the CPU tier
    load_s: float = 0.0  # time those reloads take, added to the step


class BatchScheduler:
    """Decides each step's batch; owns the running set, the KV pool and the LoRA slots."""

    def __init__(self, config: EngineConfig, pool: KVBlockPool, *, record_events: bool) -> None:
        self.config = config
        self.pool = pool
        self.cpu = CpuTier(config.num_cpu_blocks if pool.enable_prefix_caching else 0)
        self.record_events = record_events
        self.decoders = DecodeBatch(config.block_size)
        self.prefilling: dict[str, Sequence] = {}
        self.order: dict[str, Sequence] = {}  # every running sequence, admission order
        self.loras = LoraSlots(config.max_loras)
        self.waiting_loras: Counter[str] = Counter()  # adapters of waiting requests
        self._by_priority = config.scheduling_policy == PRIORITY

    def schedule(self, waiting: WaitQueue, now: float) -> Schedule:
        plan = Schedule()
        budget = self._schedule_decoders(waiting, plan)
        budget = self._schedule_prefills(waiting, budget, plan)
        plan.decode_seqs = len(self.decoders)
        # vLLM admits nobody in a step that preempted; when the preemptions emptied the
        # batch entirely we admit at once instead of simulating an empty step.
        if not plan.preempted or not self.order:
            self._schedule_waiting(waiting, budget, now, plan)
        return plan

    # -- running -------------------------------------------------------------------------

    def victim(self) -> Sequence:
        """The running request preemption takes: the last admitted (FCFS), or the least
        important by vLLM's priority order, latest arrival first (``priority``)."""
        if not self._by_priority:
            return next(reversed(self.order.values()))
        return max(self.order.values(), key=lambda seq: (seq.req.priority, seq.arrival))

    def _schedule_decoders(self, waiting: WaitQueue, plan: Schedule) -> int:
        decoders = self.decoders
        needed = decoders.crossings(0, 1)
        while needed > self.pool.available_blocks:
            self.preempt(self.victim(), waiting, plan)
            needed = decoders.crossings(0, 1)
        self._take(needed, plan.events)
        decoders.reserved = 1
        return self.config.max_num_batched_tokens - len(decoders)

    def _schedule_prefills(self, waiting: WaitQueue, budget: int, plan: Schedule) -> int:
        for seq in list(self.prefilling.values()):
            if budget <= 0:
                break
            if seq.request_id not in self.prefilling:
                continue  # preempted earlier in this pass
            tokens = min(seq.total - seq.computed, budget)
            while self._blocks_for(seq, tokens) > self.pool.available_blocks:
                victim = self.victim()
                self.preempt(victim, waiting, plan)
                if victim is seq:
                    break
            else:
                self._allocate(seq, tokens, plan)
                plan.items.append((seq, tokens))
                budget -= tokens
        return budget

    def preempt(self, seq: Sequence, waiting: WaitQueue, plan: Schedule) -> None:
        self.retire(seq)
        seq.reset_for_recompute()
        waiting.prepend(seq)
        if seq.lora is not None:
            self.waiting_loras[seq.lora] += 1
        plan.preempted.append(seq)

    def retire(self, seq: Sequence, events: list[KVEvent] | None = None) -> None:
        """A running sequence leaves the batch: release its blocks and its LoRA slot use.

        With ``events`` (a request that finished) and ``cache_generated_blocks``, its full
        generated blocks are registered first, so they stay cached after the release.
        """
        if seq.request_id in self.decoders:
            self.decoders.remove(seq)
        else:
            self.prefilling.pop(seq.request_id, None)
        del self.order[seq.request_id]
        if events is not None and self.config.cache_generated_blocks:
            self._cache_generated(seq, events)
        self.pool.release(seq.refs, seq.n_blocks - len(seq.refs))
        if seq.lora is not None:
            self.loras.release(seq.lora)

    # -- waiting -------------------------------------------------------------------------

    def unwait_lora(self, lora: str) -> None:
        self.waiting_loras[lora] -= 1
        if self.waiting_loras[lora] <= 0:
            del self.waiting_loras[lora]

    def _schedule_waiting(
        self, waiting: WaitQueue, budget: int, now: float, plan: Schedule
    ) -> None:
        skipped: list[Sequence] = []
        while waiting and budget > 0 and len(self.order) < self.config.max_num_seqs:
            seq = waiting.peek()
            if not self.loras.fits(seq.lora):
                skipped.append(waiting.pop())
                continue
            tokens = self._admit(seq, budget, plan)
            if tokens == 0:
                break
            waiting.pop()
            if seq.lora is not None:
                self.unwait_lora(seq.lora)
            self.order[seq.request_id] = seq
            self.prefilling[seq.request_id] = seq
            plan.items.append((seq, tokens))
            plan.admitted += 1
            budget -= tokens
            if seq.first_scheduled is None:
                seq.first_scheduled = now
        waiting.restore(skipped)

    def _admit(self, seq: Sequence, budget: int, plan: Schedule) -> int:
        """Reuse the cached prefix and allocate the first chunk; 0 when it does not fit.

        The GPU hit is referenced; the CPU-tier hit that follows it (``loaded`` blocks) takes
        fresh blocks, is reloaded in this step and counts as computed.
        """
        size = self.pool.block_size
        hashes = seq.req.block_hashes
        pool = self.pool
        limit = (seq.total - 1) // size
        hits = pool.match_prefix(hashes, limit)
        loaded = self.cpu.match(hashes, hits, limit) if self.cpu.capacity else 0
        reused = (hits + loaded) * size
        tokens = min(seq.total - reused, budget)
        needed = -(-(reused + tokens) // size) - hits
        prefix = hashes[:hits]
        if needed > pool.available_blocks - hits and (
            needed > pool.available_blocks - pool.unreferenced(prefix)
        ):
            return 0
        pool.acquire(prefix)
        seq.refs = list(prefix)
        seq.n_blocks = hits
        seq.computed = reused
        if seq.first_scheduled is None:
            seq.cached_tokens = reused
        plan.prefix_queries += seq.total
        plan.prefix_hits += hits * size
        if loaded:
            self.cpu.touch(hashes[hits : hits + loaded])
            plan.cpu_hits += loaded * size
            plan.load_s += self.config.cpu_load_s(loaded * size)
        if seq.lora is not None:
            plan.lora_loads += self.loras.acquire(seq.lora)
        self._allocate(seq, tokens, plan)
        return tokens

    # -- blocks --------------------------------------------------------------------------

    def _blocks_for(self, seq: Sequence, tokens: int) -> int:
        return -(-(seq.computed + tokens) // self.pool.block_size) - seq.n_blocks

    def take(self, count: int, events: list[KVEvent]) -> None:
        """Allocate ``count`` blocks; what the GPU pool evicts goes to the CPU tier."""
        self._take(count, events)

    def _take(self, count: int, events: list[KVEvent]) -> None:
        if count <= 0:
            return
        evicted: list[int] = []
        self.pool.allocate(count, evicted)
        if not evicted:
            return
        if not self.cpu.capacity:
            if self.record_events:
                events.append(BlocksRemoved(tuple(evicted)))
            return
        offloaded: list[int] = []
        dropped: list[int] = []
        self.cpu.offload(evicted, offloaded, dropped)
        if self.record_events:  # the CPU copy is announced before the GPU block goes
            if offloaded:
                events.append(BlocksStored(tuple(offloaded), None, (), medium=MEDIUM_CPU))
            events.append(BlocksRemoved(tuple(evicted)))
            if dropped:
                events.append(BlocksRemoved(tuple(dropped), medium=MEDIUM_CPU))

    def take_decode_blocks(self, offset: int, iterations: int, events: list[KVEvent]) -> None:
        """Allocate the blocks of fused decode iterations after the first."""
        self._take(self.decoders.crossings(offset, iterations), events)

    def _allocate(self, seq: Sequence, tokens: int, plan: Schedule) -> None:
        needed = self._blocks_for(seq, tokens)
        if needed > 0:
            self._take(needed, plan.events)
            seq.n_blocks += needed
        if self.pool.enable_prefix_caching:
            full = min((seq.computed + tokens) // self.pool.block_size, len(seq.req.block_hashes))
            if full > len(seq.refs):
                self._register(seq, full, plan.events)

    def _register(
        self,
        seq: Sequence,
        full: int,
        sink: list[KVEvent],
        hashes: tuple[int, ...] | None = None,
    ) -> None:
        """Enter blocks ``len(seq.refs)..full`` of ``hashes`` (the prompt's by default) in
        the prefix cache; report new runs."""
        chain = seq.req.block_hashes if hashes is None else hashes
        first = len(seq.refs)
        fresh = chain[first:full]
        stored = self.pool.register_all(fresh)
        seq.refs.extend(fresh)
        if not self.record_events:
            return
        if all(stored):
            self._stored(seq, chain, first, full, sink)
            return
        run_start: int | None = None
        for offset, new in enumerate(stored):
            if new and run_start is None:
                run_start = first + offset
            elif not new and run_start is not None:
                self._stored(seq, chain, run_start, first + offset, sink)
                run_start = None
        if run_start is not None:
            self._stored(seq, chain, run_start, full, sink)

    def _cache_generated(self, seq: Sequence, events: list[KVEvent]) -> None:
        """Register a finished request's full generated blocks (prompt + output chain)."""
        output = seq.req.output_block_hashes
        if not output or not self.pool.enable_prefix_caching:
            return
        prompt = seq.req.block_hashes
        if len(seq.refs) < len(prompt):
            return  # its prompt was never fully cached (cannot chain on)
        chain = prompt + output
        full = min(seq.computed // self.pool.block_size, len(chain), seq.n_blocks)
        if full > len(seq.refs):
            self._register(seq, full, events, chain)

    def _stored(
        self, seq: Sequence, hashes: tuple[int, ...], start: int, stop: int, sink: list[KVEvent]
    ) -> None:
        size = self.pool.block_size
        token_ids = seq.req.token_ids
        known = token_ids is not None and stop * size <= len(token_ids)
        sink.append(
            BlocksStored(
                block_hashes=tuple(hashes[start:stop]),
                parent_block_hash=hashes[start - 1] if start else None,
                token_ids=tuple(token_ids[start * size : stop * size])
                if known and token_ids is not None
                else (),
                lora_name=seq.lora,
            )
        )
