"""The usage ledger: every settled request reaches the store exactly once, and memory stays
bounded however long the store is away.

The request path calls :meth:`Ledger.record`, which appends one line to a write-ahead
segment on local disk (a copy into the segment's shared memory mapping: no system call, no
fsync; see :class:`~pilothouse.governance.ledger_wal.Segment`) and keeps the entry in
memory while fewer than ``max_buffered`` are waiting. A background flusher
sends batches of up to ``batch_size`` to :meth:`LedgerSink.write_ledger` in a worker thread
every ``flush_interval_s``, or at once when a batch is full; it fsyncs the log before each
batch, so a power loss costs at most the entries recorded since the last batch; a
``kill -9`` costs nothing, since the kernel's page cache already holds every line
``record`` wrote.

While the store is down the flusher retries with capped exponential backoff, and ``record``
keeps going: once the memory buffer is full, entries wait on disk only and are read back
from the segments, in order, when the store returns. A segment is deleted once all its
entries were committed; a checkpoint names the position up to which they were. A new
process replays whatever an earlier one left, before its own entries. Sending an entry
twice (a crash between the store's commit and the checkpoint) is harmless: the store keeps
one row per ``request_id``. Exactly once = write-ahead log + idempotent insert.

One process per directory (an ``flock`` says so); the ledger belongs to one event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections import deque
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import NamedTuple

from pilothouse.config.governance import LedgerSpec
from pilothouse.errors import PilothouseError
from pilothouse.governance import ledger_wal as wal
from pilothouse.governance.ledger_wal import Chores, Position
from pilothouse.governance.ports import LedgerSink
from pilothouse.governance.records import LedgerEntry

log = logging.getLogger("pilothouse.ledger")

_BYTES_PER_ENTRY = 512
"""Space allocated per entry of a segment (a line is ~200 bytes; ids and names are
bounded): a segment is sealed at ``segment_entries`` lines or when full, first come."""
_MIN_SEGMENT_BYTES = 64 * 1024


@dataclass(frozen=True, slots=True)
class LedgerStats:
    """Counters for metrics and health checks (all of this process's lifetime)."""

    recorded: int
    """Entries :meth:`Ledger.record` accepted."""
    buffered: int
    """Entries held in memory, waiting for the store (never above ``max_buffered``)."""
    on_disk: int
    """Recorded entries waiting on disk only (not in memory): the outage backlog."""
    replaying: int
    """Segments left by an earlier process and not yet read back."""
    written: int
    """Entries the store confirmed, replays included."""
    inserted: int
    """Of those, the ones new to the store (the others were there already)."""
    failures: int
    """Failed attempts to write a batch (or to read one back from disk)."""
    skipped: int
    """Damaged lines skipped on read-back (torn by a crash, or corrupted)."""
    segments: int
    """Write-ahead segment files on disk."""
    last_error: str | None
    """The latest failure while it lasts; ``None`` once a batch was written again."""


class _Item(NamedTuple):
    entry: LedgerEntry
    segment: int
    end: int
    """Offset just after the entry's line: the position up to which it is in the log."""


class Ledger:
    """Records usage entries; see the module docstring for the guarantees.

    Usage: ``ledger = Ledger(state_dir / "ledger", store, spec.ledger)``, ``await
    ledger.start()`` at startup (``await ledger.flush(timeout_s)`` before seeding budgets
    from :meth:`Store.spent`, if what a crash left must count), ``ledger.record(entry)`` as
    each request settles, ``await ledger.aclose()`` on the way out; :meth:`stats` for metrics.

    ``segment_entries`` lines go in one segment file before the next is started;
    ``retry_initial_s`` doubles after every failed write up to ``retry_max_s``.
    """

    def __init__(
        self,
        directory: Path,
        sink: LedgerSink,
        spec: LedgerSpec,
        *,
        segment_entries: int = 10_000,
        retry_initial_s: float = 0.05,
        retry_max_s: float = 5.0,
    ) -> None:
        self._dir = directory
        self._sink = sink
        self._spec = spec
        self._max_buffered = spec.max_buffered
        self._batch_size = spec.batch_size
        self._segment_entries = segment_entries
        self._retry = (retry_initial_s, retry_max_s)
        self._buffer: deque[_Item] = deque()
        self._backlog: Position | None = None
        """Where the entries that are on disk only start; ``None``: all are in memory."""
        self._segments: list[int] = []
        self._first_own = 0
        self._file: wal.Segment | None = None
        self._segment_bytes = max(_MIN_SEGMENT_BYTES, segment_entries * _BYTES_PER_ENTRY)
        self._lock_fd: int | None = None
        self._segment = 0
        self._offset = 0
        self._lines = 0
        self._chores = Chores()
        self._wake = asyncio.Event()
        self._progress = asyncio.Condition()
        self._task: asyncio.Task[None] | None = None
        self._recorded = self._on_disk = self._written = self._inserted = 0
        self._failures = self._skipped = 0
        self._last_error: str | None = None

    async def start(self) -> None:
        """Take the directory, open a fresh segment, and start the flusher; segments an
        earlier process left are sent first (``await flush()`` to wait for them)."""
        if self._task is not None:
            raise RuntimeError("the ledger is already started")
        await asyncio.to_thread(self._open)
        self._task = asyncio.create_task(self._run(), name="ledger-flusher")

    def record(self, entry: LedgerEntry) -> None:
        """Append ``entry`` to the write-ahead log; synchronous and cheap (a memory copy).

        When it returns the entry survives a crash of this process; it survives a power
        loss once the next batch was fsynced. Raises :class:`OSError` when the disk refuses
        the line (nothing of it is kept) and :class:`RuntimeError` when not started.
        """
        file = self._file
        if file is None:
            raise RuntimeError("the ledger is not started, or closed")
        line = wal.encode(entry)
        start = self._offset
        end = start + len(line)
        if end > file.capacity or self._lines >= self._segment_entries:
            if len(line) > self._segment_bytes:
                raise OSError(f"a ledger line of {len(line)} bytes exceeds a segment")
            file = self._rotate()
            start, end = 0, len(line)
        file.write(start, line)
        self._offset = end
        self._lines += 1
        self._recorded += 1
        buffer = self._buffer
        if self._backlog is None and len(buffer) < self._max_buffered:
            buffer.append(_Item(entry, self._segment, end))
            if len(buffer) >= self._batch_size:
                self._wake.set()
        else:
            if self._backlog is None:
                self._backlog = (self._segment, start)
            self._on_disk += 1
            self._wake.set()

    async def flush(self, timeout_s: float | None = None) -> bool:
        """Wait until every entry recorded so far (and every replayed one) is in the store;
        ``False`` if that did not happen within ``timeout_s``."""
        if self._task is None:
            raise RuntimeError("the ledger is not started")
        target = self._head()
        self._wake.set()
        try:
            async with asyncio.timeout(timeout_s), self._progress:
                await self._progress.wait_for(lambda: self._done_up_to(target))
        except TimeoutError:
            return False
        return True

    async def aclose(self, timeout_s: float = 5.0) -> bool:
        """Stop recording, flush what waits (at most ``timeout_s``), stop the flusher and
        release the directory. ``False``: some entries stayed on disk for the next start."""
        if self._task is None or self._file is None:
            return True
        file, self._file = self._file, None  # record() refuses from here on
        done = await self.flush(timeout_s)
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        chores, self._chores = self._chores, Chores()
        chores.sync.append(file.seal(self._offset))
        if done:
            chores.unlink += [wal.segment_path(self._dir, s) for s in self._segments]
            self._segments = []
        await asyncio.to_thread(chores.run)
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None
        if not done:
            log.warning("ledger: %d entries wait on disk for the next start", self._pending())
        return done

    def stats(self) -> LedgerStats:
        ahead = self._backlog[0] if self._backlog is not None else self._first_own
        return LedgerStats(
            recorded=self._recorded,
            buffered=len(self._buffer),
            on_disk=self._on_disk,
            replaying=sum(1 for s in self._segments if ahead <= s < self._first_own),
            written=self._written,
            inserted=self._inserted,
            failures=self._failures,
            skipped=self._skipped,
            segments=len(self._segments),
            last_error=self._last_error,
        )

    # --- the write side (event loop) ---

    def _open(self) -> None:
        """Blocking setup, in a worker thread: lock, read what an earlier process left."""
        self._dir.mkdir(parents=True, exist_ok=True)
        self._lock_fd = wal.lock_directory(self._dir)
        try:
            self._recover()
        except BaseException:
            os.close(self._lock_fd)
            self._lock_fd = None
            raise

    def _recover(self) -> None:
        checkpoint = wal.read_checkpoint(self._dir)
        done_below = checkpoint[0] if checkpoint is not None else -1
        old = []
        for segment in wal.list_segments(self._dir):
            if segment < done_below:
                wal.segment_path(self._dir, segment).unlink(missing_ok=True)
            else:
                old.append(segment)
        if old and checkpoint is not None:
            self._backlog = (old[0], checkpoint[1] if old[0] == checkpoint[0] else 0)
        elif old:
            self._backlog = (old[0], 0)
        self._first_own = max([*old, done_below]) + 1
        self._segments = old
        self._segment = self._first_own - 1
        self._new_segment()

    def _new_segment(self) -> wal.Segment:
        file = self._file = wal.Segment(self._dir, self._segment + 1, self._segment_bytes)
        self._segment += 1
        self._segments.append(self._segment)
        self._offset = self._lines = 0
        self._chores.sync_directory = self._dir
        return file

    def _rotate(self) -> wal.Segment:
        """Seal the open segment and start the next; the flusher fsyncs and closes the
        old one. Raises :class:`OSError` (the old one stays open) if none can be made."""
        old, length = self._file, self._offset
        file = self._new_segment()
        if old is not None:
            self._chores.sync.append(old.seal(length))
        return file

    def _head(self) -> Position:
        return (self._segment, self._offset)

    def _pending(self) -> int:
        return len(self._buffer) + self._on_disk

    def _done_up_to(self, target: Position) -> bool:
        first = self._buffer[0] if self._buffer else None
        return (first is None or (first.segment, first.end) > target) and (
            self._backlog is None or self._backlog >= target
        )

    # --- the flusher (background task; blocking work in worker threads) ---

    async def _run(self) -> None:
        delay = self._retry[0]
        while True:
            if not self._urgent():
                # not asyncio.wait_for: on 3.11 it can swallow a cancel that meets a wake-up
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self._spec.flush_interval_s):
                        await self._wake.wait()
            self._wake.clear()
            try:
                await self._drain()
            except Exception as exc:  # retried until it works: the entries are on disk
                self._failed(exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._retry[1])
                self._wake.set()
            else:
                delay = self._retry[0]

    def _urgent(self) -> bool:
        return len(self._buffer) >= self._spec.batch_size or self._backlog is not None

    async def _drain(self) -> None:
        """Send everything recorded up to now, then full batches while there are any."""
        target = self._head()
        while True:
            await self._top_up()
            if not self._buffer or (
                len(self._buffer) < self._spec.batch_size
                and (self._buffer[0].segment, self._buffer[0].end) > target
            ):
                break
            await self._send(list(islice(self._buffer, self._spec.batch_size)))
        if self._chores:
            await self._do_chores()
        await self._notify()

    async def _top_up(self) -> None:
        """Read entries that wait on disk only back into memory, up to a batch."""
        room = min(self._spec.batch_size, self._spec.max_buffered) - len(self._buffer)
        if self._backlog is None or room <= 0:
            return
        found = await asyncio.to_thread(
            wal.read_entries, self._dir, list(self._segments), self._backlog, self._head(), room
        )
        self._buffer.extend(_Item(*item) for item in found.items)
        own = sum(1 for _, segment, _ in found.items if segment >= self._first_own)
        self._on_disk -= own + sum(1 for s in found.skipped if s >= self._first_own)
        self._skipped += len(found.skipped)
        self._backlog = None if found.position >= self._head() else found.position
        self._retire_done_segments()

    async def _send(self, batch: list[_Item]) -> None:
        chores, self._chores = self._chores, Chores()
        if self._file is not None:  # fsync the open segment too, through a copy we own
            chores.sync.append(os.dup(self._file.fd))
        last = batch[-1]
        inserted = await asyncio.to_thread(
            self._write, [item.entry for item in batch], (last.segment, last.end), chores
        )
        for _ in batch:
            self._buffer.popleft()
        self._written += len(batch)
        self._inserted += inserted
        self._last_error = None
        self._retire_done_segments()
        await self._notify()

    async def _notify(self) -> None:
        async with self._progress:
            self._progress.notify_all()

    def _write(self, entries: list[LedgerEntry], checkpoint: Position, chores: Chores) -> int:
        """In a worker thread: disk chores, the store's transaction, then the checkpoint."""
        chores.run()
        inserted = self._sink.write_ledger(entries)
        try:
            wal.write_checkpoint(self._dir, checkpoint)
        except OSError as exc:  # the next start only sends more again
            log.warning("ledger: could not write the checkpoint: %s", exc)
        return inserted

    async def _do_chores(self) -> None:
        chores, self._chores = self._chores, Chores()
        await asyncio.to_thread(chores.run)

    def _retire_done_segments(self) -> None:
        """Queue the deletion of segments that lie wholly before every waiting entry."""
        frontier = self._backlog[0] if self._backlog is not None else self._segment
        if self._buffer:
            frontier = min(frontier, self._buffer[0].segment)
        while self._segments and self._segments[0] < frontier:
            self._chores.unlink.append(wal.segment_path(self._dir, self._segments.pop(0)))

    def _failed(self, exc: Exception) -> None:
        self._failures += 1
        self._last_error = f"{type(exc).__name__}: {exc}"
        if isinstance(exc, PilothouseError | OSError):
            log.warning(
                "ledger: store write failed (%s); %d entries wait, retrying",
                self._last_error,
                self._pending(),
            )
        else:
            log.error("ledger: unexpected failure; retrying", exc_info=exc)
