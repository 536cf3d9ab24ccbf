"""The decoding sequences of a replica, advanced together in O(1) per iteration.

Every decode iteration computes one token for each decoding sequence and samples the next.
Instead of touching each sequence, the batch keeps a global iteration counter ``G``; a
member stores ``base`` and ``gbase`` so that ``computed = base + G`` and
``generated = gbase + G``. What the step needs in aggregate is kept incrementally:

- KV blocks: a sequence needs a new block in the iteration where ``computed % block_size
  == 0``, so a histogram of ``base mod block_size`` gives the number of new blocks for any
  run of iterations in O(min(iterations, block_size));
- attention load: the sum of ``base`` gives the context all members attend to;
- finishing: a heap keyed by the counter value at which each member has generated its
  target.

Between steps each member holds exactly ``ceil(computed / block_size)`` blocks; while a
step's blocks are reserved (``reserved = 1``) it holds ``ceil((computed + 1) / block_size)``.
A member's fields are written back (:meth:`sync`) only when it leaves the batch.
"""

from __future__ import annotations

import heapq
from itertools import count

from pilothouse.sim.sequence import Sequence


class DecodeBatch:
    """Lazily advanced set of decoding sequences (see the module docstring)."""

    __slots__ = ("_base_sum", "_heap", "_hist", "_tiebreak", "counter", "reserved", "seqs", "size")

    def __init__(self, block_size: int) -> None:
        self.size = block_size
        self.counter = 0
        self.reserved = 0
        self.seqs: dict[str, Sequence] = {}
        self._hist = [0] * block_size
        self._base_sum = 0
        self._heap: list[tuple[int, int, int, Sequence]] = []
        self._tiebreak = count()

    def __len__(self) -> int:
        return len(self.seqs)

    def __contains__(self, request_id: str) -> bool:
        return request_id in self.seqs

    def add(self, seq: Sequence) -> None:
        """Admit a sequence that just finished its prefill (``computed == total - 1``)."""
        base = seq.computed - self.counter
        seq.base = base
        seq.gbase = seq.generated - self.counter
        seq.epoch += 1
        self.seqs[seq.request_id] = seq
        self._hist[base % self.size] += 1
        self._base_sum += base
        finish_at = seq.target - seq.gbase
        heapq.heappush(self._heap, (finish_at, next(self._tiebreak), seq.epoch, seq))

    def sync(self, seq: Sequence) -> None:
        """Write the member's lazily kept fields back into the sequence."""
        seq.computed = seq.base + self.counter
        seq.generated = seq.gbase + self.counter
        seq.n_blocks = -(-(seq.computed + self.reserved) // self.size)

    def remove(self, seq: Sequence) -> None:
        self.sync(seq)
        del self.seqs[seq.request_id]
        self._hist[seq.base % self.size] -= 1
        self._base_sum -= seq.base
        seq.epoch += 1  # invalidates its heap entry

    def crossings(self, offset: int, iterations: int) -> int:
        """New blocks needed by iterations ``G + offset .. G + offset + iterations - 1``."""
        if iterations <= 0 or not self.seqs:
            return 0
        size, hist = self.size, self._hist
        full, rest = divmod(iterations, size)
        total = full * len(self.seqs)
        start = self.counter + offset
        for step in range(rest):
            total += hist[-(start + step) % size]
        return total

    def fitting_iterations(self, limit: int, available: int) -> int:
        """Largest ``k <= limit`` whose iterations after the first need <= ``available`` blocks."""
        size, hist = self.size, self._hist
        needed = 0
        iterations = 1
        while iterations < limit:
            needed += hist[-(self.counter + iterations) % size]
            if needed > available:
                break
            iterations += 1
        return iterations

    def context_tokens(self) -> int:
        """Tokens the members attend to in the next iteration (their context incl. the new one)."""
        return self._base_sum + len(self.seqs) * (self.counter + 1)

    def iterations_to_first_finish(self) -> int:
        """Iterations until the earliest member reaches its target (>= 1); 0 when empty."""
        heap = self._heap
        while heap and heap[0][3].epoch != heap[0][2]:
            heapq.heappop(heap)
        if not heap:
            return 0
        return heap[0][0] - self.counter

    def advance(self, iterations: int) -> list[Sequence]:
        """Run ``iterations`` iterations; returns the members that finished, removed and synced."""
        self.counter += iterations
        self.reserved = 0
        finished: list[Sequence] = []
        heap = self._heap
        while heap and heap[0][0] <= self.counter:
            _finish_at, _tiebreak, epoch, seq = heapq.heappop(heap)
            if seq.epoch == epoch:
                self.remove(seq)
                finished.append(seq)
        return finished
