"""Routing history for approximate prefix affinity: which prompt blocks went where.

Each endpoint has a bounded LRU of chained block hashes. A prompt's blocks are recorded
last-to-first so that the first blocks are the most recent: under pressure the tail of a
prefix is forgotten before its head, as an engine's own prefix cache evicts. The endpoints
themselves form an LRU too, so an endpoint that is never picked again ages out.

With ``offload_capacity`` > 0 an endpoint also has an *offloaded* LRU, standing for an
engine's CPU tier: blocks pushed out of the first LRU move there (most recent last) instead
of being forgotten, and a block recorded again moves back. :meth:`BlockIndex.match_tiers_many`
then tells the two apart. With 0 (the default) nothing is offloaded and the index behaves as
a single LRU.

That offloaded LRU is the *routing* view. The engine's tier (vLLM's offloading connector, the
simulator's :mod:`pilothouse.sim.cpu_tier`) keeps its copy of a block that is reloaded, so
part of its room holds copies of GPU-resident blocks and it drops older blocks sooner than
that view says. A second LRU per endpoint mirrors the tier that way (copies kept, refreshed
when reloaded or pushed out again) for estimates of what a prompt will really find cached
(:meth:`BlockIndex.match_engine_tiers_many`, which latency predictions use). Routing keeps the
first view: scoring with the second (tried on ``long-context``, 2026-12-07) lost hit rate and
was slower near saturation in short runs.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Container, Iterable, Sequence
from itertools import takewhile


class BlockIndex:
    """Per-endpoint LRU sets of block hashes; ``match`` counts the longest recorded prefix."""

    __slots__ = (
        "_capacity",
        "_copies",
        "_endpoints",
        "_max_endpoints",
        "_offload_capacity",
        "_offloaded",
    )

    def __init__(
        self, capacity_per_endpoint: int, max_endpoints: int, offload_capacity: int = 0
    ) -> None:
        if capacity_per_endpoint <= 0 or max_endpoints <= 0:
            raise ValueError("capacities must be positive")
        if offload_capacity < 0:
            raise ValueError("offload_capacity must be >= 0")
        self._capacity = capacity_per_endpoint
        self._max_endpoints = max_endpoints
        self._offload_capacity = offload_capacity
        self._endpoints: OrderedDict[str, OrderedDict[int, None]] = OrderedDict()
        self._offloaded: dict[str, OrderedDict[int, None]] = {}
        self._copies: dict[str, OrderedDict[int, None]] = {}  # the engine's tier, as it is

    @property
    def tiered(self) -> bool:
        """Whether blocks pushed out are kept as offloaded (``offload_capacity`` > 0)."""
        return self._offload_capacity > 0

    def match(self, endpoint: str, hashes: Sequence[int]) -> int:
        """How many of ``hashes``, from the first, ``endpoint`` holds."""
        blocks = self._endpoints.get(endpoint)
        if not blocks or not hashes or hashes[0] not in blocks:
            return 0  # the common case: one lookup
        # The walk runs in C (takewhile over the dict's own __contains__), not in bytecode.
        return len(list(takewhile(blocks.__contains__, hashes)))

    def match_many(self, endpoints: Iterable[str], hashes: Sequence[int]) -> list[int]:
        """:meth:`match` for each of ``endpoints``, in order: one call per cycle instead of
        one per endpoint (the scorer's hot path, 64+ endpoints per decision)."""
        if not hashes:
            return [0 for _ in endpoints]
        first = hashes[0]
        get = self._endpoints.get
        matched = []
        for endpoint in endpoints:
            blocks = get(endpoint)
            if not blocks or first not in blocks:
                matched.append(0)
            else:
                matched.append(len(list(takewhile(blocks.__contains__, hashes))))
        return matched

    def match_tiers_many(
        self, endpoints: Iterable[str], hashes: Sequence[int]
    ) -> list[tuple[int, int]]:
        """Per endpoint, ``(recent, offloaded)``: how many of ``hashes`` from the first are in
        its recent LRU, and how many of the following ones in its offloaded LRU."""
        return self._match_two_tiers(endpoints, hashes, self._offloaded.get)

    def match_engine_tiers_many(
        self, endpoints: Iterable[str], hashes: Sequence[int]
    ) -> list[tuple[int, int]]:
        """:meth:`match_tiers_many` against the engine-faithful mirror of the offloaded tier
        (copies of reloaded blocks kept): what the engine will find, not where to route."""
        return self._match_two_tiers(endpoints, hashes, self._copies.get)

    def _match_two_tiers(
        self,
        endpoints: Iterable[str],
        hashes: Sequence[int],
        second_tier: Callable[[str], Container[int] | None],
    ) -> list[tuple[int, int]]:
        get = self._endpoints.get
        matched: list[tuple[int, int]] = []
        for endpoint in endpoints:
            blocks = get(endpoint)
            recent = len(list(takewhile(blocks.__contains__, hashes))) if blocks else 0
            second = second_tier(endpoint)
            rest = hashes[recent:] if second else ()
            held = len(list(takewhile(second.__contains__, rest))) if second else 0
            matched.append((recent, held))
        return matched

    def sizes(self, endpoints: Iterable[str]) -> list[int]:
        """:meth:`size` for each of ``endpoints``, in order."""
        if self._offloaded:
            return [self.size(e) for e in endpoints]
        get = self._endpoints.get
        return [len(get(e) or ()) for e in endpoints]

    def record(self, endpoint: str, hashes: Sequence[int]) -> None:
        """Remember that ``endpoint`` now holds ``hashes`` (most recent first)."""
        blocks = self._endpoints.get(endpoint)
        if blocks is None:
            blocks = self._endpoints[endpoint] = OrderedDict()
            while len(self._endpoints) > self._max_endpoints:
                gone, _ = self._endpoints.popitem(last=False)
                self._offloaded.pop(gone, None)
                self._copies.pop(gone, None)
        else:
            self._endpoints.move_to_end(endpoint)
        copies = self._copies.get(endpoint)
        if copies:  # the engine reloads these: its copies stay, refreshed
            for block in hashes:
                if block in copies and block not in blocks:
                    copies.move_to_end(block)
        for block in reversed(hashes):
            if block in blocks:
                blocks.move_to_end(block)
            else:
                blocks[block] = None
        if not self._offload_capacity:
            while len(blocks) > self._capacity:
                blocks.popitem(last=False)
            return
        self._offload(endpoint, blocks, hashes)

    def _offload(
        self, endpoint: str, blocks: OrderedDict[int, None], hashes: Sequence[int]
    ) -> None:
        """Blocks pushed out of ``blocks`` go to both offloaded views; bound them."""
        off = self._offloaded.setdefault(endpoint, OrderedDict())
        copies = self._copies.setdefault(endpoint, OrderedDict())
        for block in hashes:
            off.pop(block, None)  # recorded again: recent, not offloaded (routing view)
        while len(blocks) > self._capacity:
            pushed, _ = blocks.popitem(last=False)
            off[pushed] = None
            copies[pushed] = None
            copies.move_to_end(pushed)
        for lru in (off, copies):
            while len(lru) > self._offload_capacity:
                lru.popitem(last=False)

    def endpoints(self) -> list[str]:
        """Tracked endpoints, least recently recorded first."""
        return list(self._endpoints)

    def size(self, endpoint: str) -> int:
        """Blocks currently remembered for ``endpoint`` (offloaded ones included)."""
        blocks = self._endpoints.get(endpoint)
        off = self._offloaded.get(endpoint)
        return (len(blocks) if blocks else 0) + (len(off) if off else 0)
