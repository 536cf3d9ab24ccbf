"""The flow-control queue: priority classes, per-tenant fairness, a bound, shedding.

Pure and clock-injected: it never reads a clock; every method that depends on time is
given ``now``. The gateway's admission wrapper holds one per model and drives it.

**Order.** Highest ``priority`` first. Within a priority, tenants take turns (round-robin
in the order they became active; a tenant whose queue empties leaves the rotation), and
each tenant's requests go first in, first out. A noisy tenant with hundreds of queued
requests therefore delays a quiet tenant's request by at most one request per active
tenant, not by its whole backlog.

**Bound.** At most ``max_size`` requests wait. When a request arrives at a full queue the
*victim* is the newest request of the tenant with the most queued requests in the lowest
priority present. The newcomer displaces it when its priority is higher, or, at the same
priority, when its tenant holds at least two fewer queued requests there than the victim's
tenant (a quiet tenant displaces a noisy one; never the other way, and no ping-pong).
Otherwise the newcomer itself is shed. Either way the lowest priority is shed first.

**Timeouts.** Every request has ``deadline = enqueued + timeout_s``; :meth:`FlowQueue.expire`
removes and returns those past it. :meth:`FlowQueue.dequeue` ignores deadlines: call
``expire(now)`` first.
"""

from __future__ import annotations

import heapq
from collections import OrderedDict, deque
from dataclasses import dataclass
from itertools import count

QUEUE_FULL = "queue-full"
EVICTED = "evicted"
TIMED_OUT = "timed-out"


@dataclass(frozen=True, slots=True)
class FlowItem:
    """One queued request."""

    key: str
    tenant: str
    priority: int
    enqueued_at: float
    deadline: float


@dataclass(frozen=True, slots=True)
class Shed:
    """A request the queue dropped, and why (``queue-full``, ``evicted``, ``timed-out``)."""

    item: FlowItem
    reason: str


class _Band:
    """The requests of one priority: a FIFO per tenant, tenants in round-robin order."""

    __slots__ = ("size", "tenants")

    def __init__(self) -> None:
        self.tenants: OrderedDict[str, deque[FlowItem]] = OrderedDict()
        self.size = 0

    def push(self, item: FlowItem) -> None:
        queue = self.tenants.get(item.tenant)
        if queue is None:
            queue = self.tenants[item.tenant] = deque()
        queue.append(item)
        self.size += 1

    def pop_next(self) -> FlowItem:
        tenant, queue = next(iter(self.tenants.items()))
        item = queue.popleft()
        self.size -= 1
        if queue:
            self.tenants.move_to_end(tenant)  # its turn is over
        else:
            del self.tenants[tenant]
        return item

    def remove(self, item: FlowItem) -> None:
        queue = self.tenants[item.tenant]
        if queue[-1] is item:
            queue.pop()
        else:
            queue.remove(item)
        self.size -= 1
        if not queue:
            del self.tenants[item.tenant]

    def count(self, tenant: str) -> int:
        queue = self.tenants.get(tenant)
        return len(queue) if queue else 0

    def victim(self) -> FlowItem:
        """The newest request of the largest tenant (ties: the one whose turn is furthest)."""
        largest = max(reversed(self.tenants.values()), key=len)
        return largest[-1]


class FlowQueue:
    """Bounded priority queue with per-tenant round-robin; see the module docstring."""

    __slots__ = ("_bands", "_deadlines", "_items", "_max", "_seq", "_timeout")

    def __init__(self, max_size: int, timeout_s: float) -> None:
        if max_size < 0:
            raise ValueError("max_size must be >= 0")
        if timeout_s <= 0:
            raise ValueError("timeout_s must be > 0")
        self._max = max_size
        self._timeout = timeout_s
        self._bands: dict[int, _Band] = {}
        self._items: dict[str, FlowItem] = {}
        # (deadline, order, item), with lazy deletion of items no longer queued
        self._deadlines: list[tuple[float, int, FlowItem]] = []
        self._seq = count()

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: object) -> bool:
        return key in self._items

    def depth(self, priority: int) -> int:
        """Requests queued at ``priority``."""
        band = self._bands.get(priority)
        return band.size if band else 0

    def enqueue(self, key: str, *, tenant: str, priority: int, now: float) -> list[Shed]:
        """Queue a request; returns what was shed to make room, or the newcomer itself."""
        if key in self._items:
            raise ValueError(f"request {key!r} is already queued")
        item = FlowItem(key, tenant, priority, now, now + self._timeout)
        shed: list[Shed] = []
        if len(self._items) >= self._max:
            victim = self._victim()
            if victim is None or not self._outranks(item, victim):
                return [Shed(item, QUEUE_FULL)]
            self._remove(victim)
            shed.append(Shed(victim, EVICTED))
        self._bands.setdefault(priority, _Band()).push(item)
        self._items[key] = item
        heapq.heappush(self._deadlines, (item.deadline, next(self._seq), item))
        return shed

    def dequeue(self) -> FlowItem | None:
        """The next request to dispatch, or ``None`` when the queue is empty."""
        if not self._bands:
            return None
        priority = max(self._bands)
        band = self._bands[priority]
        item = band.pop_next()
        if not band.size:
            del self._bands[priority]
        del self._items[item.key]
        return item

    def expire(self, now: float) -> list[Shed]:
        """Remove and return the requests whose deadline is at or before ``now``."""
        shed: list[Shed] = []
        heap = self._deadlines
        while heap and heap[0][0] <= now:
            item = heapq.heappop(heap)[2]
            if self._items.get(item.key) is item:
                self._remove(item)
                shed.append(Shed(item, TIMED_OUT))
        return shed

    def remove(self, key: str) -> FlowItem | None:
        """Take a request out (its client went away); ``None`` if it is not queued."""
        item = self._items.get(key)
        if item is not None:
            self._remove(item)
        return item

    def next_deadline(self) -> float | None:
        """The earliest deadline of a queued request."""
        heap = self._deadlines
        while heap and self._items.get(heap[0][2].key) is not heap[0][2]:
            heapq.heappop(heap)
        return heap[0][0] if heap else None

    def _remove(self, item: FlowItem) -> None:
        band = self._bands[item.priority]
        band.remove(item)
        if not band.size:
            del self._bands[item.priority]
        del self._items[item.key]
        if len(self._deadlines) > 2 * len(self._items) + 64:  # drop dead heap entries
            live = self._items
            self._deadlines = [e for e in self._deadlines if live.get(e[2].key) is e[2]]
            heapq.heapify(self._deadlines)

    def _victim(self) -> FlowItem | None:
        if not self._bands:
            return None
        return self._bands[min(self._bands)].victim()

    def _outranks(self, item: FlowItem, victim: FlowItem) -> bool:
        if item.priority != victim.priority:
            return item.priority > victim.priority
        band = self._bands[victim.priority]
        return band.count(item.tenant) + 1 < band.count(victim.tenant)
