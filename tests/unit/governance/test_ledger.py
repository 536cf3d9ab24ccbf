"""The usage ledger: batches, segments, store outages, replay after a crash, exactly once."""

from __future__ import annotations

import asyncio
import shutil
import zlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import orjson
import pytest

from pilothouse.config.governance import LedgerSpec
from pilothouse.errors import ConfigError
from pilothouse.governance import ledger_wal as wal
from pilothouse.governance.ledger import Ledger
from pilothouse.governance.records import LedgerEntry
from pilothouse.testing.fake_ledger_sink import FakeLedgerSink

Open = Callable[..., Ledger]


def entry(i: int) -> LedgerEntry:
    return LedgerEntry(
        request_id=f"req-{i}",
        at=1_700_000_000.0 + i / 1000,
        model="m",
        prompt_tokens=10 + i,
        completion_tokens=i % 7,
        cost=i / 1e6,
        key_id="key_a",
        team_id="team_t",
    )


def ids(sink: FakeLedgerSink) -> list[str]:
    return list(sink.entries)


async def until(condition: Callable[[], bool], deadline_s: float = 60.0) -> None:
    """Wait for ``condition`` (a behaviour, not a timing: the deadline is only a guard)."""
    async with asyncio.timeout(deadline_s):
        while True:
            if condition():
                return
            await asyncio.sleep(0.005)


@pytest.fixture
async def ledgers(tmp_path: Path) -> AsyncIterator[Open]:
    opened: list[Ledger] = []

    def open_ledger(
        sink: FakeLedgerSink,
        directory: Path | None = None,
        *,
        batch_size: int = 10,
        flush_interval_s: float = 60.0,
        max_buffered: int = 1000,
        segment_entries: int = 10_000,
    ) -> Ledger:
        spec = LedgerSpec(
            batch_size=batch_size, flush_interval_s=flush_interval_s, max_buffered=max_buffered
        )
        ledger = Ledger(
            directory or tmp_path / "wal",
            sink,
            spec,
            segment_entries=segment_entries,
            retry_initial_s=0.005,
            retry_max_s=0.02,
        )
        opened.append(ledger)
        return ledger

    yield open_ledger
    for ledger in opened:
        await ledger.aclose(timeout_s=0.5)


async def test_ledger_sends_a_full_batch_without_waiting_for_the_interval(ledgers: Open) -> None:
    sink = FakeLedgerSink()
    ledger = ledgers(sink, batch_size=10, flush_interval_s=3600)
    await ledger.start()
    for i in range(10):
        ledger.record(entry(i))
    await until(lambda: len(sink.entries) == 10)
    for i in range(10, 13):
        ledger.record(entry(i))
    assert await ledger.flush(timeout_s=30)
    assert sink.batches == [10, 3]
    assert ids(sink) == [f"req-{i}" for i in range(13)]


async def test_ledger_splits_what_waits_into_batches_in_order(ledgers: Open) -> None:
    sink = FakeLedgerSink()
    ledger = ledgers(sink, batch_size=10)
    await ledger.start()
    for i in range(35):
        ledger.record(entry(i))
    assert await ledger.flush(timeout_s=30)
    assert sink.batches == [10, 10, 10, 5]
    assert ids(sink) == [f"req-{i}" for i in range(35)]
    assert ledger.stats().written == 35


async def test_ledger_interval_sends_a_partial_batch(ledgers: Open) -> None:
    sink = FakeLedgerSink()
    ledger = ledgers(sink, batch_size=100, flush_interval_s=0.01)
    await ledger.start()
    for i in range(3):
        ledger.record(entry(i))
    await until(lambda: len(sink.entries) == 3)


async def test_ledger_rotates_segments_and_deletes_them_once_committed(
    ledgers: Open, tmp_path: Path
) -> None:
    sink = FakeLedgerSink()
    ledger = ledgers(sink, segment_entries=10)
    await ledger.start()
    for i in range(35):
        ledger.record(entry(i))
    assert len(wal.list_segments(tmp_path / "wal")) == 4
    assert ledger.stats().segments == 4
    assert await ledger.flush(timeout_s=30)
    assert ledger.stats().segments == 1  # the open one
    assert await ledger.aclose()
    assert wal.list_segments(tmp_path / "wal") == []
    assert len(sink.entries) == 35


async def test_ledger_close_flushes_and_refuses_more(ledgers: Open, tmp_path: Path) -> None:
    sink = FakeLedgerSink()
    ledger = ledgers(sink, batch_size=100, flush_interval_s=3600)
    await ledger.start()
    for i in range(7):
        ledger.record(entry(i))
    assert await ledger.aclose(timeout_s=30)
    assert ids(sink) == [f"req-{i}" for i in range(7)]
    with pytest.raises(RuntimeError, match="not started, or closed"):
        ledger.record(entry(7))
    assert wal.list_segments(tmp_path / "wal") == []


async def test_ledger_retries_a_store_outage_and_recovers(ledgers: Open) -> None:
    sink = FakeLedgerSink()
    sink.down = True
    ledger = ledgers(sink, batch_size=10, flush_interval_s=0.01)
    await ledger.start()
    for i in range(100):
        ledger.record(entry(i))
    await until(lambda: sink.attempts >= 3)
    stats = ledger.stats()
    assert stats.failures >= 3
    assert stats.last_error is not None
    assert "store is down" in stats.last_error
    assert stats.written == 0
    sink.down = False
    assert await ledger.flush(timeout_s=30)
    assert ids(sink) == [f"req-{i}" for i in range(100)]
    assert ledger.stats().last_error is None


async def test_ledger_memory_stays_bounded_during_a_long_outage(ledgers: Open) -> None:
    sink = FakeLedgerSink()
    sink.down = True
    ledger = ledgers(sink, batch_size=500, flush_interval_s=0.01, max_buffered=1000)
    await ledger.start()
    most = 0
    for chunk in range(50):
        for i in range(chunk * 1000, (chunk + 1) * 1000):
            ledger.record(entry(i))
        await asyncio.sleep(0)  # let the flusher fail and retry in between
        stats = ledger.stats()
        most = max(most, stats.buffered)
        assert stats.buffered + stats.on_disk == (chunk + 1) * 1000
    assert most <= 1000
    assert ledger.stats().on_disk >= 49_000

    sink.down = False
    recovered = asyncio.ensure_future(ledger.flush(timeout_s=300))
    while not recovered.done():  # read back from disk, still within the bound
        most = max(most, ledger.stats().buffered)
        await asyncio.sleep(0.001)
    assert recovered.result()
    assert most <= 1000
    assert ids(sink) == [f"req-{i}" for i in range(50_000)]
    assert sink.duplicates == 0
    stats = ledger.stats()
    assert (stats.buffered, stats.on_disk, stats.written) == (0, 0, 50_000)


async def test_ledger_with_less_memory_than_a_batch_sends_smaller_batches(
    ledgers: Open,
) -> None:
    sink = FakeLedgerSink()
    ledger = ledgers(sink, batch_size=10, max_buffered=3)
    await ledger.start()
    for i in range(50):
        ledger.record(entry(i))
    assert ledger.stats().buffered == 3
    assert await ledger.flush(timeout_s=30)
    assert ids(sink) == [f"req-{i}" for i in range(50)]
    assert max(sink.batches) == 3


async def test_ledger_replays_what_a_stopped_process_left_before_new_entries(
    ledgers: Open, tmp_path: Path
) -> None:
    down = FakeLedgerSink()
    down.down = True
    first = ledgers(down, segment_entries=7)
    await first.start()
    for i in range(20):
        first.record(entry(i))
    assert not await first.aclose(timeout_s=0.05)  # the store never came back
    assert len(wal.list_segments(tmp_path / "wal")) == 3

    sink = FakeLedgerSink()
    second = ledgers(sink, segment_entries=7)
    await second.start()
    assert second.stats().replaying == 3
    for i in range(20, 25):
        second.record(entry(i))
    assert await second.flush(timeout_s=30)
    assert ids(sink) == [f"req-{i}" for i in range(25)]
    assert second.stats().replaying == 0


async def test_ledger_skips_a_torn_last_line_and_damaged_lines(
    ledgers: Open, tmp_path: Path
) -> None:
    down = FakeLedgerSink()
    down.down = True
    first = ledgers(down)
    await first.start()
    for i in range(10):
        first.record(entry(i))
    assert not await first.aclose(timeout_s=0.05)
    [segment] = wal.list_segments(tmp_path / "wal")
    path = wal.segment_path(tmp_path / "wal", segment)
    lines = path.read_bytes().splitlines(keepends=True)
    lines[3] = lines[3].replace(b'"req-3"', b'"req-X"')  # the checksum no longer matches
    torn = wal.encode(entry(10))[:25]  # a crash in the middle of a write
    path.write_bytes(b"".join(lines) + torn)

    sink = FakeLedgerSink()
    second = ledgers(sink)
    await second.start()
    assert await second.flush(timeout_s=30)
    assert ids(sink) == [f"req-{i}" for i in range(10) if i != 3]
    assert second.stats().skipped == 2


async def test_ledger_replays_a_segment_a_crash_left_unsealed(
    ledgers: Open, tmp_path: Path
) -> None:
    down = FakeLedgerSink()
    down.down = True
    first = ledgers(down)
    await first.start()
    for i in range(5):
        first.record(entry(i))
    crashed = tmp_path / "crashed"  # as a kill -9 leaves it: the open segment unsealed
    shutil.copytree(tmp_path / "wal", crashed)
    [segment] = wal.list_segments(crashed)
    data = wal.segment_path(crashed, segment).read_bytes()
    assert data.endswith(b"\0")  # allocated, never written
    assert data.rstrip(b"\0") == b"".join(wal.encode(entry(i)) for i in range(5))

    sink = FakeLedgerSink()
    second = ledgers(sink, crashed)
    await second.start()
    assert await second.flush(timeout_s=30)
    assert ids(sink) == [f"req-{i}" for i in range(5)]
    assert second.stats().skipped == 0  # unused space is not a damaged line


async def test_ledger_sealed_segments_hold_only_their_lines(ledgers: Open, tmp_path: Path) -> None:
    down = FakeLedgerSink()
    down.down = True
    ledger = ledgers(down, segment_entries=3)
    await ledger.start()
    for i in range(7):
        ledger.record(entry(i))
    assert not await ledger.aclose(timeout_s=0.05)
    segments = wal.list_segments(tmp_path / "wal")
    data = b"".join(wal.segment_path(tmp_path / "wal", s).read_bytes() for s in segments)
    assert data == b"".join(wal.encode(entry(i)) for i in range(7))


async def test_ledger_checkpoint_skips_what_was_committed_before_a_crash(
    ledgers: Open, tmp_path: Path
) -> None:
    sink = FakeLedgerSink()
    ledger = ledgers(sink, batch_size=10, flush_interval_s=3600)
    await ledger.start()
    for i in range(10):
        ledger.record(entry(i))
    await until(lambda: len(sink.entries) == 10)  # a full batch went out: checkpoint at 10
    for i in range(10, 15):
        ledger.record(entry(i))
    crashed = tmp_path / "crashed"  # the directory as a kill -9 would leave it now
    shutil.copytree(tmp_path / "wal", crashed)
    assert await ledger.aclose(timeout_s=30)

    fresh = FakeLedgerSink()
    after_crash = ledgers(fresh, crashed)
    await after_crash.start()
    assert await after_crash.flush(timeout_s=30)
    assert ids(fresh) == [f"req-{i}" for i in range(10, 15)]
    assert await after_crash.aclose()


async def test_ledger_replay_without_checkpoint_is_idempotent(
    ledgers: Open, tmp_path: Path
) -> None:
    sink = FakeLedgerSink()
    ledger = ledgers(sink, batch_size=10, flush_interval_s=3600)
    await ledger.start()
    for i in range(15):
        ledger.record(entry(i))
    crashed = tmp_path / "crashed"
    shutil.copytree(tmp_path / "wal", crashed)  # before anything was committed
    assert await ledger.flush(timeout_s=30)

    replay = ledgers(sink, crashed)  # same store: every entry is already there
    await replay.start()
    assert await replay.flush(timeout_s=30)
    stats = replay.stats()
    assert (stats.written, stats.inserted) == (15, 0)
    assert sink.duplicates == 15
    assert ids(sink) == [f"req-{i}" for i in range(15)]


async def test_ledger_retries_failed_writes_without_losing_or_doubling(ledgers: Open) -> None:
    sink = FakeLedgerSink()
    sink.fail_next(3)
    ledger = ledgers(sink, batch_size=5)
    await ledger.start()
    for i in range(12):
        ledger.record(entry(i))
    assert await ledger.flush(timeout_s=30)
    assert ids(sink) == [f"req-{i}" for i in range(12)]
    assert sink.duplicates == 0
    assert ledger.stats().failures == 3


async def test_ledger_close_gives_up_on_a_hung_store_and_keeps_the_entries(
    ledgers: Open, tmp_path: Path
) -> None:
    hung = FakeLedgerSink()
    hung.hold()
    first = ledgers(hung, batch_size=5)
    await first.start()
    for i in range(5):
        first.record(entry(i))
    await until(lambda: hung.waiting == 1)
    try:
        assert not await first.aclose(timeout_s=0.05)
    finally:
        hung.down = True
        hung.release()  # the worker thread must end before the event loop closes
    assert wal.list_segments(tmp_path / "wal") != []

    sink = FakeLedgerSink()
    second = ledgers(sink)
    await second.start()
    assert await second.flush(timeout_s=30)
    assert ids(sink) == [f"req-{i}" for i in range(5)]


async def test_ledger_directory_belongs_to_one_process(ledgers: Open) -> None:
    first = ledgers(FakeLedgerSink())
    await first.start()
    with pytest.raises(ConfigError, match="in use by another process"):
        await ledgers(FakeLedgerSink()).start()


def test_ledger_line_codec_round_trips_and_rejects_damage() -> None:
    original = LedgerEntry("r", 1.5, "m", 3, 4, 0.25, 1.0, 429, None, "t", None)
    line = wal.encode(original)
    assert line.endswith(b"\n")
    assert line.count(b"\n") == 1
    assert wal.decode(line) == original
    assert wal.decode(line[:-1]) is None  # torn: no newline
    assert wal.decode(line[:20] + b"\n") is None
    assert wal.decode(b"\0" * 40 + b"\n") is None  # what a power loss can leave
    assert wal.decode(line.replace(b"429", b"428")) is None
    with_id = original._replace(id="e1")
    assert wal.decode(wal.encode(with_id)) == with_id


def test_ledger_lines_an_older_version_wrote_are_read_back() -> None:
    # Format 1 (before entry ids): eleven fields, the request id was the entry's key.
    def line(*fields: object) -> bytes:
        body = orjson.dumps(fields)
        return b"%08x %b\n" % (zlib.crc32(body), body)

    entry = wal.decode(line(1, "r", 1.5, "m", 3, 4, 0.25, 1.0, 200, "k", "t", "o"))
    assert entry == LedgerEntry("r", 1.5, "m", 3, 4, 0.25, 1.0, 200, "k", "t", "o")
    assert entry is not None
    assert entry.key() == "r"
    assert wal.decode(line(7, "r", 1.5, "m", 3, 4, 0.25, 1.0, 200, "k", "t", "o")) is None
    assert wal.decode(line(1, "r", 1.5, "m", 3, 4, 0.25, 1.0, 200, "k", "t", "o", "e")) is None
