"""The discrete-event queue: a binary heap of timestamped events, in a total order.

Events are ordered by time, then kind (a step that ends at the very moment a request
arrives is applied first, so the replica is free for it), then insertion order. Nothing
depends on hashing or on the identity of objects, so a run is reproducible.
"""

from __future__ import annotations

import heapq
from itertools import count

#: A replica's step ends; ``ref`` is the replica index and ``tag`` the step's version.
STEP_END = 0
#: A request arrives at the gateway; ``ref`` is the request, ``tag`` 1 when it came from the
#: workload stream (the next one is pulled then) and 0 for a released follow-up.
ARRIVAL = 1
#: A disaggregated request's KV cache reached its decode replica; ``ref`` is the
#: :class:`~pilothouse.sim.pd.Handoff`.
KV_TRANSFER = 2
#: The autoscaling hook's tick (``ref`` -1) or a started replica becoming ready (``ref`` its
#: index, ``tag`` its start's version); see :mod:`pilothouse.sim.autoscaling`.
SCALE = 3

Event = tuple[float, int, int, object, int]
"""``(time, kind, order, ref, tag)``."""


class EventQueue:
    """Pending events, earliest first."""

    __slots__ = ("_heap", "_order")

    def __init__(self) -> None:
        self._heap: list[Event] = []
        self._order = count()

    def __len__(self) -> int:
        return len(self._heap)

    def push(self, time: float, kind: int, ref: object, tag: int = 0) -> None:
        heapq.heappush(self._heap, (time, kind, next(self._order), ref, tag))

    def pop(self) -> Event:
        return heapq.heappop(self._heap)

    def peek_time(self) -> float | None:
        """Time of the earliest event, or ``None`` when empty."""
        return self._heap[0][0] if self._heap else None
