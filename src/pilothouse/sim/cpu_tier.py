"""The CPU tier of a replica's KV cache: host memory that keeps what the GPU tier evicts.

Production vLLM fleets offload KV blocks to CPU memory (vLLM's native offloading connector,
LMCache). Modelled here as a victim cache in front of recomputation:

- **offload on eviction**: a cached block the GPU tier evicts (:class:`KVBlockPool` LRU) is
  copied into this tier, most recently used last; when the tier is full its least recently
  used block is dropped. A block already here is only refreshed (no second copy, no event).
- **reload on a hit**: at admission, the prompt blocks that follow the GPU prefix hit and are
  held here are loaded back into fresh GPU blocks instead of being prefilled (the engine
  charges ``bytes / bandwidth + latency`` to the step, :meth:`EngineConfig.cpu_load_s`). The
  copy stays here (refreshed): evicting that block from the GPU again costs no transfer.

Like the GPU pool, blocks are counted by hash, not stored. Every hash that enters or leaves
the tier is reported, so the engine can publish ``BlockStored`` / ``BlockRemoved`` events with
medium ``CPU`` as vLLM's offloading connector does.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from itertools import islice, takewhile


class CpuTier:
    """An LRU set of block hashes with a capacity in blocks (0 = no tier)."""

    __slots__ = ("_lru", "capacity")

    def __init__(self, capacity: int) -> None:
        if capacity < 0:
            raise ValueError("capacity must be >= 0")
        self.capacity = capacity
        self._lru: OrderedDict[int, None] = OrderedDict()  # least recently used first

    def __len__(self) -> int:
        return len(self._lru)

    def __contains__(self, block_hash: int) -> bool:
        return block_hash in self._lru

    def match(self, hashes: Sequence[int], start: int, stop: int) -> int:
        """How many of ``hashes[start:stop]``, from ``start``, this tier holds (``stop`` may
        pass the end: a resumed request's limit counts its generated tokens too)."""
        lru = self._lru
        stop = min(stop, len(hashes))  # a preempted sequence's total outgrows its prompt
        if not lru or start >= stop or hashes[start] not in lru:
            return 0
        return sum(1 for _ in takewhile(lru.__contains__, islice(hashes, start, stop)))

    def touch(self, hashes: Sequence[int]) -> None:
        """Mark held blocks as just used (they are being reloaded)."""
        move = self._lru.move_to_end
        for block in hashes:
            move(block)

    def offload(self, victims: Sequence[int], stored: list[int], dropped: list[int]) -> None:
        """Copy blocks the GPU tier evicted (oldest first) into this tier.

        ``stored`` gets the hashes newly held here, ``dropped`` those evicted from here to
        make room (a victim that cannot stay, the tier being smaller than the batch, is in
        neither list).
        """
        if not self.capacity:
            return
        lru = self._lru
        new: list[int] = []
        for block in victims:
            if block in lru:
                lru.move_to_end(block)
            else:
                lru[block] = None
                new.append(block)
        overflow = len(lru) - self.capacity
        if overflow <= 0:
            stored.extend(new)
            return
        evicted = list(islice(lru, overflow))
        for block in evicted:
            del lru[block]
        fresh = set(new)
        dropped.extend(block for block in evicted if block not in fresh)
        gone = fresh.intersection(evicted)
        stored.extend(block for block in new if block not in gone)

    def clear(self) -> None:
        self._lru.clear()
