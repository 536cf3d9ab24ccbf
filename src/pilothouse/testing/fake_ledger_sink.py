"""An in-memory :class:`~pilothouse.governance.ports.LedgerSink` with a switchable outage.

It keeps one entry per entry id (:meth:`LedgerEntry.key`) as the real store does (a
second write of the same id is counted, not stored), so tests of code that records usage can
check totals and exactly-once delivery without a database, and can take the "store" down
and up again.
Thread-safe: the ledger calls it from a worker thread.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

from pilothouse.governance.records import LedgerEntry


class FakeLedgerSink:
    """Stores entries in a dict; ``down = True`` makes every write fail as an outage would.

    ``hold()`` makes writes block until ``release()`` (a store that hangs); a held write
    fails if the sink is down when it is released.
    """

    def __init__(self) -> None:
        self.entries: dict[str, LedgerEntry] = {}
        self.batches: list[int] = []
        """Size of every batch that was committed, in order."""
        self.duplicates = 0
        """Entries written again after they were stored (replays)."""
        self.attempts = 0
        self.waiting = 0
        """Writes blocked by :meth:`hold` right now."""
        self.down = False
        self._fail_next = 0
        self._lock = threading.Lock()
        self._open = threading.Event()
        self._open.set()

    def fail_next(self, count: int) -> None:
        """Fail the next ``count`` writes, then work again."""
        with self._lock:
            self._fail_next = count

    def hold(self) -> None:
        self._open.clear()

    def release(self) -> None:
        self._open.set()

    def write_ledger(self, entries: Sequence[LedgerEntry]) -> int:
        with self._lock:
            self.waiting += 1
        self._open.wait()
        with self._lock:
            self.waiting -= 1
        with self._lock:
            self.attempts += 1
            if self.down or self._fail_next > 0:
                self._fail_next = max(0, self._fail_next - 1)
                raise ConnectionRefusedError("the store is down (FakeLedgerSink)")
            new = 0
            for entry in entries:
                key = entry.key()
                if key in self.entries:
                    self.duplicates += 1
                else:
                    self.entries[key] = entry
                    new += 1
            self.batches.append(len(entries))
            return new
