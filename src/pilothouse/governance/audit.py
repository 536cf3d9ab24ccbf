"""The audit log's writer on the request path: no database round trip per tool call.

The tool gateway decides each call in well under a millisecond; one transaction per call
would cost more than the whole decision, and would hold the chain's lock once per call. So
:meth:`AuditLog.record` only stamps the event with the time and appends it to an in-memory
buffer; a background task hands batches to :meth:`ToolStore.append
<pilothouse.governance.tool_store.ToolStore.append>` in a worker thread every
``interval_s`` (at once when a batch is full), so one transaction chains many events.

The buffer is bounded (``max_buffered``): while the store is out of reach the writer
retries with capped backoff and the request path keeps going; events beyond the bound are
counted, not kept, and the next batch written starts with an ``audit_dropped`` event
saying how many were lost, so the gap itself is in the chain. A crash loses what was
buffered (at most ``interval_s`` worth in normal operation): the audit log is evidence of
what the gateway decided, not the decision itself.

One event loop owns an ``AuditLog``: ``await start()`` at startup, ``record(event)`` from
that loop, ``await aclose()`` on the way out (it flushes).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import islice
from typing import Protocol

from pilothouse.governance.tool_store import AuditEvent, AuditRecord

log = logging.getLogger("pilothouse.audit")

DROPPED = "audit_dropped"
"""Kind of the event that records how many events the full buffer could not keep."""


class AuditSink(Protocol):
    """Where batches go: :class:`~pilothouse.governance.tool_store.ToolStore`."""

    def append(self, events: Sequence[AuditEvent], now: float) -> list[AuditRecord]: ...


@dataclass(frozen=True, slots=True)
class AuditStats:
    """Counters for metrics and health checks (this process's lifetime)."""

    recorded: int
    """Events :meth:`AuditLog.record` was given."""
    buffered: int
    """Events waiting for the store."""
    written: int
    """Events in the store (``audit_dropped`` markers not counted)."""
    dropped: int
    """Events lost because the buffer was full (or the log closed)."""
    failures: int
    """Failed attempts to write a batch."""
    last_error: str | None
    """The latest failure while it lasts; ``None`` once a batch was written again."""


class AuditLog:
    """Buffers audit events and appends them to the store in the background (see the
    module docstring)."""

    def __init__(
        self,
        sink: AuditSink,
        *,
        interval_s: float = 0.2,
        batch_size: int = 500,
        max_buffered: int = 10_000,
        retry_max_s: float = 5.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if interval_s <= 0 or batch_size <= 0 or max_buffered <= 0:
            raise ValueError("interval_s, batch_size and max_buffered must be positive")
        self._sink = sink
        self._interval_s = interval_s
        self._batch_size = batch_size
        self._max_buffered = max_buffered
        self._retry_max_s = retry_max_s
        self._clock = clock
        self._buffer: deque[AuditEvent] = deque()
        self._enqueued = 0
        """Events ever put in the buffer; ``_written`` catches up with it."""
        self._written = 0
        self._recorded = 0
        self._dropped = 0
        self._unreported = 0
        """Dropped events not yet recorded by an ``audit_dropped`` event."""
        self._failures = 0
        self._streak = 0
        """Failures since the last batch written: the backoff's exponent."""
        self._last_error: str | None = None
        self._closed = False
        self._wake = asyncio.Event()
        self._progress = asyncio.Condition()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Start the background writer (events recorded before are written first)."""
        if self._task is not None:
            raise RuntimeError("the audit log is already started")
        self._task = asyncio.create_task(self._run(), name="audit-writer")

    def record(self, event: AuditEvent) -> None:
        """Buffer ``event``, stamped with the time now unless it carries one; synchronous,
        no I/O. Never raises: a full buffer (or a closed log) counts the event as dropped."""
        self._recorded += 1
        if self._closed or len(self._buffer) >= self._max_buffered:
            self._dropped += 1
            self._unreported += 1
            return
        if event.at is None:  # built directly: dataclasses.replace costs several µs
            event = AuditEvent(
                event.kind,
                event.session,
                event.principal,
                event.tool,
                event.decision,
                event.rule,
                event.detail,
                self._clock(),
            )
        self._buffer.append(event)
        self._enqueued += 1
        if len(self._buffer) >= self._batch_size:
            self._wake.set()

    async def flush(self, timeout_s: float | None = None) -> bool:
        """Wait until every event recorded so far is in the store; ``False`` if that did not
        happen within ``timeout_s``."""
        if self._task is None:
            raise RuntimeError("the audit log is not started")
        target = self._enqueued
        self._wake.set()
        try:
            async with asyncio.timeout(timeout_s), self._progress:
                await self._progress.wait_for(lambda: self._written >= target)
        except TimeoutError:
            return False
        return True

    async def aclose(self, timeout_s: float = 5.0) -> bool:
        """Stop taking events, flush (at most ``timeout_s``) and stop the writer. ``False``:
        some events could not be written and are lost."""
        self._closed = True
        if self._task is None:
            return not self._buffer
        done = await self.flush(timeout_s)
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        self._task = None
        if not done:
            log.warning("audit: %d events could not be written before close", len(self._buffer))
        return done

    def stats(self) -> AuditStats:
        return AuditStats(
            recorded=self._recorded,
            buffered=len(self._buffer),
            written=self._written,
            dropped=self._dropped,
            failures=self._failures,
            last_error=self._last_error,
        )

    async def _run(self) -> None:
        delay = self._interval_s
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._wake.wait()
            self._wake.clear()
            delay = self._interval_s
            while self._buffer or self._unreported:
                if not await self._write_batch():
                    delay = min(self._retry_max_s, self._interval_s * 2 ** min(self._streak, 8))
                    break

    async def _write_batch(self) -> bool:
        batch = list(islice(self._buffer, self._batch_size))
        lost = self._unreported
        events = batch
        if lost:
            marker = AuditEvent(DROPPED, detail={"count": lost}, at=self._clock())
            events = [marker, *batch]
        try:
            await asyncio.to_thread(self._sink.append, events, self._clock())
        except Exception as exc:  # the writer must outlive any failure of the store
            self._failures += 1
            self._streak += 1
            self._last_error = str(exc) or type(exc).__name__
            log.warning("audit: writing %d events failed: %s", len(events), self._last_error)
            return False
        for _ in batch:
            self._buffer.popleft()
        self._unreported -= lost
        self._written += len(batch)
        self._last_error = None
        self._streak = 0
        async with self._progress:
            self._progress.notify_all()
        return True
