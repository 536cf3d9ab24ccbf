"""The engine model's waiting queue, in the order of vLLM's ``--scheduling-policy``.

- ``fcfs`` (vLLM's default): arrival order; a preempted request goes back to the **front**.
- ``priority``: ordered by ``(priority, arrival time)``, **lowest value first** (vLLM's
  convention: ``priority`` 0 is served before 1). A preempted request goes back to the
  position its key gives it, as in vLLM's heap-based queue. Ties on both keep insertion
  order, so a run stays deterministic.

The scheduler uses only the methods below, so both orders are interchangeable. The FCFS
queue is a plain deque (the hot path of every existing run, unchanged); the priority queue
is a binary heap (O(log n) per push and pop).
"""

from __future__ import annotations

import heapq
import itertools
from collections import deque
from collections.abc import Iterable, Iterator
from typing import Protocol

from pilothouse.sim.config import FCFS, PRIORITY, SCHEDULING_POLICIES
from pilothouse.sim.sequence import Sequence

__all__ = ["FCFS", "PRIORITY", "FcfsQueue", "PriorityQueue", "WaitQueue", "wait_queue"]


class WaitQueue(Protocol):
    """What the batch scheduler needs of a waiting queue."""

    def __len__(self) -> int: ...

    def push(self, seq: Sequence) -> None:
        """A request arrives."""

    def prepend(self, seq: Sequence) -> None:
        """A preempted request comes back (it has waited already)."""

    def peek(self) -> Sequence:
        """The request admission considers next."""

    def pop(self) -> Sequence:
        """Take the request :meth:`peek` returned."""

    def restore(self, skipped: list[Sequence]) -> None:
        """Put back requests popped but not admitted (in the order they were popped)."""

    def remove(self, seq: Sequence) -> None:
        """Drop a waiting request (aborted)."""


class FcfsQueue(deque[Sequence]):
    """First come, first served; preempted requests go back to the front."""

    def push(self, seq: Sequence) -> None:
        self.append(seq)

    def prepend(self, seq: Sequence) -> None:
        self.appendleft(seq)

    def peek(self) -> Sequence:
        return self[0]

    def pop(self) -> Sequence:  # type: ignore[override]  # the queue's head, not its tail
        return self.popleft()

    def restore(self, skipped: list[Sequence]) -> None:
        self.extendleft(reversed(skipped))


class PriorityQueue:
    """``(priority, arrival, insertion)`` ascending: vLLM's priority scheduling order."""

    __slots__ = ("_counter", "_heap")

    def __init__(self, items: Iterable[Sequence] = ()) -> None:
        self._heap: list[tuple[int, float, int, Sequence]] = []
        self._counter = itertools.count()
        for seq in items:
            self.push(seq)

    def __len__(self) -> int:
        return len(self._heap)

    def __bool__(self) -> bool:
        return bool(self._heap)

    def __iter__(self) -> Iterator[Sequence]:
        """The waiting requests in service order (a sorted copy; for tests and inspection)."""
        return iter([entry[3] for entry in sorted(self._heap)])

    def push(self, seq: Sequence) -> None:
        entry = (seq.req.priority, seq.arrival, next(self._counter), seq)
        heapq.heappush(self._heap, entry)

    def prepend(self, seq: Sequence) -> None:
        self.push(seq)

    def peek(self) -> Sequence:
        return self._heap[0][3]

    def pop(self) -> Sequence:
        return heapq.heappop(self._heap)[3]

    def restore(self, skipped: list[Sequence]) -> None:
        for seq in skipped:
            self.push(seq)

    def remove(self, seq: Sequence) -> None:
        for index, entry in enumerate(self._heap):
            if entry[3] is seq:
                self._heap[index] = self._heap[-1]
                self._heap.pop()
                heapq.heapify(self._heap)
                return
        raise ValueError("sequence is not waiting")


def wait_queue(policy: str) -> FcfsQueue | PriorityQueue:
    """An empty waiting queue for vLLM's ``--scheduling-policy`` ``policy``."""
    if policy == FCFS:
        return FcfsQueue()
    if policy == PRIORITY:
        return PriorityQueue()
    known = ", ".join(SCHEDULING_POLICIES)
    raise ValueError(f"unknown scheduling policy {policy!r} (known: {known})")
