"""The ledger across ``kill -9`` and a store outage, with a real process and a real SQLite file.

A child process records entries in a loop into a ledger whose store is a SQLite file
(``INSERT OR IGNORE`` on the request id, as the real store's idempotent insert does) and
prints each request id once ``record()`` returned. The test takes the store down, kills the
child with SIGKILL, starts another child on the same directory and kills it too, then
recovers in this process and checks the store holds exactly what the children reported:
nothing lost, nothing twice.

Also a benchmark-style helper (no threshold): ``python tests/e2e/governance/
test_ledger_crash.py bench`` prints what ``record()`` costs and what memory does while the
store is away.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

import pilothouse
from pilothouse.config.governance import LedgerSpec
from pilothouse.governance.ledger import Ledger
from pilothouse.governance.records import LedgerEntry

pytestmark = pytest.mark.e2e

SPEC = LedgerSpec(batch_size=50, flush_interval_s=0.01, max_buffered=200)


class SqliteSink:
    """The smallest idempotent store: one row per request id; down while ``flag`` exists."""

    def __init__(self, path: Path, flag: Path) -> None:
        self.path = path
        self.flag = flag

    def create(self) -> None:
        with contextlib.closing(sqlite3.connect(self.path)) as db, db:
            db.execute(
                "CREATE TABLE ledger (request_id TEXT PRIMARY KEY, at REAL, model TEXT,"
                " prompt_tokens INTEGER, completion_tokens INTEGER)"
            )

    def write_ledger(self, entries: Sequence[LedgerEntry]) -> int:
        if self.flag.exists():
            raise ConnectionRefusedError("the store is down (test flag)")
        rows = [
            (e.request_id, e.at, e.model, e.prompt_tokens, e.completion_tokens) for e in entries
        ]
        with contextlib.closing(sqlite3.connect(self.path, timeout=30)) as db, db:
            cursor = db.executemany("INSERT OR IGNORE INTO ledger VALUES (?, ?, ?, ?, ?)", rows)
            return cursor.rowcount

    def rows(self) -> list[tuple[str, int]]:
        with contextlib.closing(sqlite3.connect(self.path)) as db:
            return db.execute("SELECT request_id, prompt_tokens FROM ledger").fetchall()


def entry(prefix: str, i: int) -> LedgerEntry:
    return LedgerEntry(f"{prefix}-{i}", time.time(), "m", 100 + i % 50, i % 13, team_id="t")


def ledger(directory: Path, sink: SqliteSink) -> Ledger:
    return Ledger(
        directory, sink, SPEC, segment_entries=500, retry_initial_s=0.01, retry_max_s=0.05
    )


async def _child(directory: Path, db: Path, report: Path, prefix: str) -> None:
    """Record forever; report each request id once ``record()`` returned (appended to a
    file, not a pipe: a reader that falls behind must not slow or pause the child)."""
    recorder = ledger(directory, SqliteSink(db, db.parent / "store-down"))
    await recorder.start()
    out = os.open(report, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    i = 0
    while True:
        recorder.record(entry(prefix, i))
        os.write(out, f"{prefix}-{i}\n".encode())
        i += 1
        if i % 25 == 0:
            await asyncio.sleep(0.001)  # a gateway's requests interleave with the flusher


class Child:
    """A recording child process, and the request ids it reported."""

    def __init__(self, tmp: Path, prefix: str) -> None:
        env = dict(os.environ)
        source = str(Path(pilothouse.__file__).parents[1])
        env["PYTHONPATH"] = os.pathsep.join([source, env.get("PYTHONPATH", "")])
        self.prefix = prefix
        self.log = tmp / f"child-{prefix}.log"
        self.report = tmp / f"reported-{prefix}"
        args = ["child", str(tmp / "wal"), str(tmp / "db"), str(self.report), prefix]
        with self.log.open("w") as err:
            self.proc = subprocess.Popen(
                [sys.executable, __file__, *args], stdout=err, stderr=err, env=env
            )

    def reported(self) -> list[str]:
        if not self.report.exists():
            return []
        return self.report.read_text().split("\n")[:-1]  # whole lines only

    def wait_for(self, count: int, deadline_s: float = 120.0) -> None:
        deadline = time.monotonic() + deadline_s
        while len(self.reported()) < count:
            assert self.proc.poll() is None, self.log.read_text()[-3000:]
            assert time.monotonic() < deadline, self.log.read_text()[-3000:]
            time.sleep(0.01)

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)


async def test_ledger_kill_9_and_store_outage_lose_nothing_and_double_nothing(
    tmp_path: Path,
) -> None:
    flag = tmp_path / "store-down"
    sink = SqliteSink(tmp_path / "db", flag)
    sink.create()
    children = []
    try:
        first = Child(tmp_path, "a")
        children.append(first)
        first.wait_for(2000)
        flag.touch()  # the store goes away; the child keeps recording, to disk
        first.wait_for(8000)
        first.kill()
        flag.unlink()
        stored_before = len(sink.rows())

        second = Child(tmp_path, "b")  # replays a's log while recording its own
        children.append(second)
        second.wait_for(3000)
        second.kill()
    finally:
        for child in children:
            if child.proc.poll() is None:
                child.proc.kill()
                child.proc.wait()

    recovery = ledger(tmp_path / "wal", sink)
    await recovery.start()
    assert await recovery.flush(timeout_s=300)
    stats = recovery.stats()
    assert await recovery.aclose()

    stored = dict(sink.rows())
    reported = 0
    for child in children:
        ids = child.reported()
        n = len(ids)
        assert ids == [f"{child.prefix}-{i}" for i in range(n)]
        mine = {rid for rid in stored if rid.startswith(f"{child.prefix}-")}
        missing = set(ids) - mine
        assert not missing, f"{len(missing)} recorded entries were lost"
        # Killed after record() returned and before the report: stored, never reported.
        assert mine - set(ids) <= {f"{child.prefix}-{n}"}
        reported += n
    print(
        f"\nledger crash: {reported} reported, {len(stored)} stored "
        f"({stored_before} before the first kill), recovery {stats}"
    )


def bench(count: int = 100_000) -> None:
    """Print the cost of ``record()`` with the store up and down, and memory meanwhile."""

    def rss_mib() -> float:
        return (
            int(Path("/proc/self/statm").read_text().split()[1])
            * os.sysconf("SC_PAGE_SIZE")
            / 2**20
        )

    async def run(tmp: Path, down: bool) -> None:
        flag = tmp / "store-down"
        sink = SqliteSink(tmp / "db", flag)
        sink.create()
        if down:
            flag.touch()
        recorder = Ledger(tmp / "wal", sink, LedgerSpec())  # the defaults a gateway gets
        await recorder.start()
        entries = [entry("x", i) for i in range(count)]
        before = rss_mib()
        spent = 0.0
        for start in range(0, count, 100):  # 100 requests between event-loop turns
            began = time.perf_counter()
            for e in entries[start : start + 100]:
                recorder.record(e)
            spent += time.perf_counter() - began
            await asyncio.sleep(0)
        stats = recorder.stats()
        print(
            f"store {'down' if down else 'up  '}: record() {spent / count * 1e6:.2f} us/entry"
            f" over {count}; buffered {stats.buffered}, on disk {stats.on_disk},"
            f" rss +{rss_mib() - before:.1f} MiB"
        )
        if down:
            flag.unlink()
        began = time.perf_counter()
        await recorder.flush()
        print(
            f"  then {count - stats.written} entries to the store in "
            f"{time.perf_counter() - began:.2f} s"
        )
        await recorder.aclose()

    for down in (False, True):
        with tempfile.TemporaryDirectory() as tmp:
            asyncio.run(run(Path(tmp), down))


if __name__ == "__main__":
    if sys.argv[1] == "child":
        asyncio.run(_child(*(Path(arg) for arg in sys.argv[2:5]), sys.argv[5]))
    else:
        bench()
