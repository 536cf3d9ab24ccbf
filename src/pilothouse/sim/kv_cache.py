"""A paged KV cache with a prefix cache: block accounting, reference counts, LRU eviction.

Blocks are counted, not stored. A block is either *free*, *used* (referenced by at least one
running request: private blocks and shared cached blocks) or *cached and unreferenced*
(kept for future prefix hits, evictable, in LRU order). Like vLLM's block pool:

- usage = used / total (cached-but-unreferenced blocks count as free);
- a request releases its blocks tail first, so a prefix's last blocks are evicted first;
- eviction takes the least recently released cached block when no free block is left.

Every hash that enters or leaves the cache is reported to the caller (``stored`` /
``evicted`` lists), which turns them into BlockStored / BlockRemoved events.

Prompts of thousands of tokens mean hundreds of blocks per request, so the per-block
bookkeeping uses C-level bulk operations (``map``, ``dict.update``, ``compress``) rather
than Python loops. The hashes of one chain are assumed distinct (chained hashes are).
"""

from __future__ import annotations

from bisect import bisect_left
from collections import OrderedDict, deque
from collections.abc import Sequence
from itertools import compress, islice, repeat
from operator import add, not_, sub


class KVBlockPool:
    """Block accounting for one replica's KV cache."""

    __slots__ = ("_lru", "_refs", "_used", "block_size", "enable_prefix_caching", "num_blocks")

    def __init__(self, num_blocks: int, block_size: int, *, enable_prefix_caching: bool = True):
        if num_blocks < 1 or block_size < 1:
            raise ValueError("num_blocks and block_size must be >= 1")
        self.num_blocks = num_blocks
        self.block_size = block_size
        self.enable_prefix_caching = enable_prefix_caching
        self._refs: dict[int, int] = {}  # cached hash -> reference count (0 = in the LRU)
        self._lru: OrderedDict[int, None] = OrderedDict()  # unreferenced cached, oldest first
        self._used = 0

    # -- observation ---------------------------------------------------------------------

    @property
    def used_blocks(self) -> int:
        return self._used

    @property
    def cached_blocks(self) -> int:
        """Blocks that carry a hash (referenced or not)."""
        return len(self._refs)

    @property
    def evictable_blocks(self) -> int:
        return len(self._lru)

    @property
    def available_blocks(self) -> int:
        """Blocks an allocation may take (free plus evictable)."""
        return self.num_blocks - self._used

    @property
    def usage(self) -> float:
        return self._used / self.num_blocks

    def __contains__(self, block_hash: int) -> bool:
        return block_hash in self._refs

    def match_prefix(self, hashes: Sequence[int], max_blocks: int) -> int:
        """How many leading blocks of ``hashes`` (at most ``max_blocks``) are cached.

        The cache is prefix-closed along a chain (a block is never released after its
        parent, and release order is eviction order), so the length is found by bisection.
        """
        refs = self._refs
        limit = min(max_blocks, len(hashes))
        if not self.enable_prefix_caching or limit == 0 or hashes[0] not in refs:
            return 0
        return bisect_left(range(limit), True, key=lambda index: hashes[index] not in refs)

    def unreferenced(self, hashes: Sequence[int]) -> int:
        """How many of these cached blocks are unreferenced (acquiring them uses capacity)."""
        if not self._lru:
            return 0
        return sum(map(self._lru.__contains__, hashes))

    # -- mutation ------------------------------------------------------------------------

    def acquire(self, hashes: Sequence[int]) -> None:
        """Take a reference on cached blocks (prefix hits)."""
        refs, lru = self._refs, self._lru
        if lru:
            idle = list(filter(lru.__contains__, hashes))
            deque(map(lru.pop, idle), maxlen=0)
            self._used += len(idle)
        refs.update(zip(hashes, map(add, map(refs.__getitem__, hashes), repeat(1)), strict=True))

    def allocate(self, count: int, evicted: list[int]) -> None:
        """Take ``count`` private blocks, evicting LRU cached blocks as needed."""
        if count > self.available_blocks:
            raise ValueError(f"cannot allocate {count} blocks ({self.available_blocks} left)")
        shortfall = count - (self.num_blocks - self._used - len(self._lru))
        if shortfall > 0:
            victims = list(islice(self._lru, shortfall))
            deque(map(self._lru.pop, victims), maxlen=0)
            deque(map(self._refs.pop, victims), maxlen=0)
            evicted.extend(victims)
        self._used += count

    def register(self, block_hash: int) -> bool:
        """A private, now full block gets ``block_hash`` and becomes shareable.

        Returns ``True`` when the hash is new to the cache (emit BlockStored). When another
        request already cached the same content, this request adopts that block and its
        private copy is freed (``False``: nothing new to announce).
        """
        count = self._refs.get(block_hash)
        if count is None:
            self._refs[block_hash] = 1
            return True
        if count == 0:
            del self._lru[block_hash]
        else:
            self._used -= 1
        self._refs[block_hash] = count + 1
        return False

    def register_all(self, hashes: Sequence[int]) -> list[bool]:
        """:meth:`register` each hash in order; the common all-new case in bulk."""
        refs = self._refs
        if not any(map(refs.__contains__, hashes)):
            refs.update(zip(hashes, repeat(1)))
            return [True] * len(hashes)
        return [self.register(block_hash) for block_hash in hashes]

    def release(self, hashes: Sequence[int], private: int) -> None:
        """Drop a request's references (``hashes`` in chain order) and ``private`` blocks."""
        refs = self._refs
        tail_first = hashes[::-1]  # the tail is evicted first
        counts = list(map(sub, map(refs.__getitem__, tail_first), repeat(1)))
        refs.update(zip(tail_first, counts, strict=True))
        unreferenced = list(compress(tail_first, map(not_, counts)))
        self._lru.update(zip(unreferenced, repeat(None)))
        self._used -= private + len(unreferenced)

    def clear(self) -> bool:
        """Forget every cached hash; only possible when no block is in use."""
        if self._used:
            return False
        self._refs.clear()
        self._lru.clear()
        return True
