"""The audit log's background writer: batches, a bounded buffer, an outage, closing."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from pilothouse.errors import StoreUnavailable
from pilothouse.governance.audit import DROPPED, AuditLog
from pilothouse.governance.store import SqlStore
from pilothouse.governance.tool_store import AuditEvent, AuditRecord, ToolStore

T0 = 1_800_000_000.0


class Sink:
    """Records each batch; fails while ``down``."""

    def __init__(self) -> None:
        self.batches: list[list[AuditEvent]] = []
        self.down = False

    def append(self, events: Sequence[AuditEvent], now: float) -> list[AuditRecord]:
        if self.down:
            raise StoreUnavailable("governance store sqlite:///x: database is locked")
        self.batches.append(list(events))
        return []

    @property
    def events(self) -> list[AuditEvent]:
        return [e for batch in self.batches for e in batch]


def _event(n: int) -> AuditEvent:
    return AuditEvent("call", session="s1", tool="t", decision="allow", detail={"n": n})


async def test_audit_log_writes_batches_in_the_background() -> None:
    sink = Sink()
    audit = AuditLog(sink, interval_s=0.01, batch_size=4, clock=lambda: T0)
    audit.record(_event(0))  # before start: written once started
    await audit.start()
    for n in range(1, 10):
        audit.record(_event(n))
    assert await audit.flush(timeout_s=30)
    assert [e.detail["n"] for e in sink.events] == list(range(10))
    assert all(e.at == T0 for e in sink.events)
    assert max(len(b) for b in sink.batches) <= 4
    stats = audit.stats()
    assert (stats.recorded, stats.written, stats.buffered, stats.dropped) == (10, 10, 0, 0)
    assert await audit.aclose()


async def test_audit_log_keeps_an_events_own_time() -> None:
    sink = Sink()
    audit = AuditLog(sink, interval_s=0.01, clock=lambda: T0)
    await audit.start()
    audit.record(AuditEvent("list", at=T0 - 3))
    assert await audit.aclose()
    assert [e.at for e in sink.events] == [T0 - 3]


async def test_audit_log_survives_an_outage_and_records_what_it_dropped() -> None:
    sink = Sink()
    sink.down = True
    audit = AuditLog(sink, interval_s=0.01, max_buffered=5, retry_max_s=0.02)
    await audit.start()
    for n in range(8):
        audit.record(_event(n))  # never raises, never blocks
    assert not await audit.flush(timeout_s=0.1)
    stats = audit.stats()
    assert (stats.buffered, stats.dropped) == (5, 3)
    assert stats.failures >= 1
    assert stats.last_error is not None
    assert "database is locked" in stats.last_error
    sink.down = False
    assert await audit.flush(timeout_s=30)
    kinds = [e.kind for e in sink.events]
    assert kinds[0] == DROPPED
    assert sink.events[0].detail == {"count": 3}
    assert [e.detail["n"] for e in sink.events[1:]] == list(range(5))
    assert audit.stats().last_error is None
    assert await audit.aclose()


async def test_audit_log_close_drops_later_events_and_reports_unwritten_ones() -> None:
    sink = Sink()
    sink.down = True
    audit = AuditLog(sink, interval_s=0.01, retry_max_s=0.02)
    await audit.start()
    audit.record(_event(0))
    assert not await audit.aclose(timeout_s=0.05)
    audit.record(_event(1))
    assert audit.stats().dropped == 1
    with pytest.raises(RuntimeError):
        await audit.flush()


async def test_audit_log_chains_into_the_store(tmp_path: Path) -> None:
    sql = SqlStore(f"sqlite:///{tmp_path / 'governance.db'}")
    sql.migrate()
    tools = ToolStore(sql)
    audit = AuditLog(tools, interval_s=0.01, batch_size=7)
    await audit.start()
    for n in range(30):
        audit.record(_event(n))
    assert await audit.aclose()
    records = tools.records()
    assert [r.detail["n"] for r in records] == list(range(30))
    assert [r.seq for r in records] == list(range(1, 31))
    assert tools.verify().ok
    sql.close()
