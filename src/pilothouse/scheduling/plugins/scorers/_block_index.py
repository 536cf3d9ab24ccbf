"""Routing history for approximate prefix affinity: which prompt blocks went where.

Each endpoint has a bounded LRU of chained block hashes. A prompt's blocks are recorded
last-to-first so that the first blocks are the most recent: under pressure the tail of a
prefix is forgotten before its head, as an engine's own prefix cache evicts. The endpoints
themselves form an LRU too, so an endpoint that is never picked again ages out.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Sequence
from itertools import takewhile


class BlockIndex:
    """Per-endpoint LRU sets of block hashes; ``match`` counts the longest recorded prefix."""

    __slots__ = ("_capacity", "_endpoints", "_max_endpoints")

    def __init__(self, capacity_per_endpoint: int, max_endpoints: int) -> None:
        if capacity_per_endpoint <= 0 or max_endpoints <= 0:
            raise ValueError("capacities must be positive")
        self._capacity = capacity_per_endpoint
        self._max_endpoints = max_endpoints
        self._endpoints: OrderedDict[str, OrderedDict[int, None]] = OrderedDict()

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

    def sizes(self, endpoints: Iterable[str]) -> list[int]:
        """:meth:`size` for each of ``endpoints``, in order."""
        get = self._endpoints.get
        return [len(get(e) or ()) for e in endpoints]

    def record(self, endpoint: str, hashes: Sequence[int]) -> None:
        """Remember that ``endpoint`` now holds ``hashes`` (most recent first)."""
        blocks = self._endpoints.get(endpoint)
        if blocks is None:
            blocks = self._endpoints[endpoint] = OrderedDict()
            while len(self._endpoints) > self._max_endpoints:
                self._endpoints.popitem(last=False)
        else:
            self._endpoints.move_to_end(endpoint)
        for block in reversed(hashes):
            if block in blocks:
                blocks.move_to_end(block)
            else:
                blocks[block] = None
        while len(blocks) > self._capacity:
            blocks.popitem(last=False)

    def endpoints(self) -> list[str]:
        """Tracked endpoints, least recently recorded first."""
        return list(self._endpoints)

    def size(self, endpoint: str) -> int:
        """Blocks currently remembered for ``endpoint``."""
        blocks = self._endpoints.get(endpoint)
        return len(blocks) if blocks else 0
