"""The ledger's write-ahead log on local disk: segment files of one entry per line.

A line is ``crc32-hex SP json-array LF``: the array holds the entry's fields in order,
after a format number, which is smaller than a JSON object and needs no key lookups to
read back. The checksum lets a read-back skip a line that a crash left half-written or
that a power loss filled with garbage, instead of failing the replay or inventing an entry.

A position in the log is ``(segment, byte offset)``; positions order the log. Segments are
numbered upwards and never reused: the checkpoint names the position below which every
entry is known to be in the store, and a new process numbers its segments after every
segment and checkpoint it finds. Everything here is plain blocking file I/O: the ledger
calls it in a worker thread, except :meth:`Segment.write`, which is a memory copy, and
opening and sealing a segment (once per ``segment_entries`` lines).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import mmap
import os
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from pilothouse.errors import ConfigError
from pilothouse.governance.records import LedgerEntry

log = logging.getLogger("pilothouse.ledger")

Position = tuple[int, int]
"""``(segment number, byte offset)`` in the log."""

_FORMAT = 2
_FIELDS = 12
_OLD_FORMATS = {1: 11}
"""Formats an older version wrote, and their field counts: lines in the segments it left are
read back after an upgrade (their entries have no ``id``)."""
_PREFIX = "ledger-"
_SUFFIX = ".wal"
CHECKPOINT = "checkpoint.json"
_CHECKPOINT_TMP = f"{CHECKPOINT}.tmp"
LOCK = "ledger.lock"


def encode(entry: LedgerEntry) -> bytes:
    """One log line for ``entry``, newline included (its fields in their order)."""
    body = orjson.dumps((_FORMAT, *entry))
    return b"%08x %b\n" % (zlib.crc32(body), body)


def decode(line: bytes) -> LedgerEntry | None:
    """The entry of one complete line (newline included), or ``None`` if it is damaged."""
    if len(line) < 11 or line[8:9] != b" " or not line.endswith(b"\n"):
        return None
    body = line[9:-1]
    try:
        if int(line[:8], 16) != zlib.crc32(body):
            return None
        fields = orjson.loads(body)
    except ValueError:  # orjson.JSONDecodeError is a ValueError
        return None
    if not isinstance(fields, list) or not fields:
        return None
    expected = _FIELDS if fields[0] == _FORMAT else _OLD_FORMATS.get(fields[0])
    if expected is None or len(fields) != expected + 1:
        return None
    return LedgerEntry(*fields[1:])


def segment_path(directory: Path, segment: int) -> Path:
    return directory / f"{_PREFIX}{segment:012d}{_SUFFIX}"


def list_segments(directory: Path) -> list[int]:
    """Numbers of the segment files in ``directory``, ascending."""
    found = []
    for path in directory.glob(f"{_PREFIX}*{_SUFFIX}"):
        number = path.name.removeprefix(_PREFIX).removesuffix(_SUFFIX)
        if number.isdigit():
            found.append(int(number))
    return sorted(found)


class Segment:
    """The open segment: a file of ``capacity`` bytes allocated up front and mapped into
    memory, so that appending a line is a copy into the mapping, not a ``write(2)``.

    The mapping is shared with the page cache: once :meth:`write` returned, the line is
    the kernel's, and a ``kill -9`` loses nothing (as after a ``write``); an ``fsync`` of
    the file covers it like any written data. A system call per request was a third of
    what governance cost the gateway. The space is allocated (``posix_fallocate``) when
    the segment is opened, so a full disk is an :class:`OSError` then, never a ``SIGBUS``
    while copying. :meth:`seal` cuts the file to what was written; a segment a crash left
    unsealed ends in zeros, which :func:`read_entries` reads as unused space.
    """

    __slots__ = ("_map", "capacity", "fd")

    def __init__(self, directory: Path, segment: int, capacity: int) -> None:
        path = segment_path(directory, segment)
        flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
        fd = os.open(path, flags, 0o600)
        try:
            if hasattr(os, "posix_fallocate"):
                os.posix_fallocate(fd, 0, capacity)
            else:  # macOS: a sparse file (a full disk would then fault in write())
                os.ftruncate(fd, capacity)
            self._map = mmap.mmap(fd, capacity)
        except BaseException:
            os.close(fd)
            path.unlink(missing_ok=True)
            raise
        self.fd = fd
        self.capacity = capacity

    def write(self, offset: int, line: bytes) -> None:
        """Copy ``line`` in at ``offset`` (the caller keeps it within :attr:`capacity`)."""
        self._map[offset : offset + len(line)] = line

    def seal(self, length: int) -> int:
        """Unmap and cut the file to the ``length`` bytes written; the descriptor is the
        caller's to fsync and close."""
        self._map.close()
        try:
            os.ftruncate(self.fd, length)
        except OSError as exc:  # the zeros left are read as unused space: no entry is lost
            log.warning("ledger: could not cut segment to %d bytes: %s", length, exc)
        return self.fd


@dataclass(slots=True)
class ReadBack:
    """What :func:`read_entries` found: entries with the position each line ends at, the
    position to go on from, and the segments of lines it had to skip."""

    items: list[tuple[LedgerEntry, int, int]] = field(default_factory=list)
    position: Position = (0, 0)
    skipped: list[int] = field(default_factory=list)


def read_entries(
    directory: Path, segments: Sequence[int], start: Position, head: Position, limit: int
) -> ReadBack:
    """Up to ``limit`` entries from ``start`` on, not past ``head`` (the write position).

    ``segments`` are the live segment numbers, ascending, ``head``'s last. Segments before
    ``head``'s are read to their end, where a line without its newline is torn and skipped;
    the returned position then moves on to the next segment, so positions stay canonical.
    """
    found = ReadBack(position=start)
    segment, offset = start
    later = iter([s for s in segments if s > segment])
    while True:
        in_head = segment >= head[0]
        offset = _read_segment(
            directory, segment, offset, head[1] if in_head else None, limit, found
        )
        found.position = (segment, offset)
        full = len(found.items) >= limit
        if in_head or (full and not _at_end(directory, segment, offset)):
            return found
        following = next(later, None)
        if following is None:
            return found
        segment, offset = following, 0
        found.position = (segment, 0)
        if full:
            return found


def _read_segment(
    directory: Path, segment: int, offset: int, end: int | None, limit: int, found: ReadBack
) -> int:
    """Read lines of one segment into ``found``; return the offset reached."""
    try:
        stream = segment_path(directory, segment).open("rb")
    except FileNotFoundError:
        return offset if end is None else max(offset, end)
    with stream:
        stream.seek(offset)
        while len(found.items) < limit and (end is None or offset < end):
            line = stream.readline()
            if not line:  # the end; in the head segment only if cut short under us
                return offset if end is None else end
            offset += len(line)
            if line[0] == 0:  # space allocated but never written: a crash left it unsealed
                line = line.lstrip(b"\0")
                if not line or line == b"\n":
                    continue
            entry = decode(line)
            if entry is None:
                found.skipped.append(segment)
                log.warning("ledger: skipped a damaged line in %s", stream.name)
            else:
                found.items.append((entry, segment, offset))
    return offset


def _at_end(directory: Path, segment: int, offset: int) -> bool:
    try:
        return segment_path(directory, segment).stat().st_size <= offset
    except FileNotFoundError:
        return True


def read_checkpoint(directory: Path) -> Position | None:
    """The position below which every entry is in the store, if one was written."""
    try:
        data = orjson.loads((directory / CHECKPOINT).read_bytes())
        return int(data["segment"]), int(data["offset"])
    except FileNotFoundError:
        return None
    except (ValueError, KeyError, TypeError):
        log.warning("ledger: unreadable checkpoint in %s; replaying every segment", directory)
        return None


def write_checkpoint(directory: Path, position: Position) -> None:
    """Replace the checkpoint atomically (write, then rename). Not fsynced: a lost
    checkpoint only makes the next start send entries again, which the store skips.

    Plain ``os`` calls, not ``Path.write_bytes``: it runs after every batch, in the worker
    thread, and each system call there hands the GIL back and forth with the event loop
    (``open`` through :mod:`io` adds an ``fstat``, an ``ioctl`` and an ``lseek``)."""
    temporary = os.path.join(directory, _CHECKPOINT_TMP)
    data = b'{"segment":%d,"offset":%d}' % position
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o666)
    try:
        while data:
            data = data[os.write(fd, data) :]
    finally:
        os.close(fd)
    os.replace(temporary, os.path.join(directory, CHECKPOINT))


class LedgerInUse(ConfigError):
    """Another live process holds this ledger directory."""


def lock_directory(directory: Path) -> int:
    """Hold ``directory`` for this process (``flock``: the kernel drops it when the process
    dies, kill -9 included); two gateways writing one log would interleave their segments."""
    fd = os.open(directory / LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError as exc:
        os.close(fd)
        raise LedgerInUse(
            f"the ledger directory {directory} is in use by another process; give each "
            "gateway replica a state directory of its own",
            "governance.state_dir",
        ) from exc
    return fd


@dataclass(slots=True)
class Chores:
    """Disk work the flusher does in its worker thread: fsync (and close) file
    descriptors it owns, and delete segments whose entries are all in the store."""

    sync: list[int] = field(default_factory=list)
    unlink: list[Path] = field(default_factory=list)
    sync_directory: Path | None = None

    def __bool__(self) -> bool:
        return bool(self.sync or self.unlink or self.sync_directory)

    def run(self) -> None:
        for fd in self.sync:
            try:
                os.fsync(fd)
            except OSError as exc:
                log.error("ledger: fsync failed: %s", exc)
            finally:
                os.close(fd)
        for path in self.unlink:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        if self.sync_directory is not None:
            fd = os.open(self.sync_directory, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(fd)
            except OSError as exc:
                log.error("ledger: fsync of the directory failed: %s", exc)
            finally:
                os.close(fd)
