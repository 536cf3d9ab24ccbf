"""The last directory a front door read, kept on local disk: what it starts from when the
governance store is out of reach at start.

A gateway restarted during a PostgreSQL outage could not start at all: it knew no key. Now
every successful sync writes ``<state_dir>/directory.json`` (atomically; mode 0600): the
directory's snapshot (organisations, teams, keys as their SHA-256 digests, scopes and quotas:
what the store holds, never a key itself), which store it came from, and, with in-process
budgets, what each subject had spent by then. A start that cannot reach the store serves
from it (:func:`~pilothouse.governance.service.start_governance`), seeds the budgets from
those figures, and writes usage ahead to the ledger as always; the sync picks the store up
when it answers. A file another store wrote, or one that cannot be read, is ignored.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import TypeAdapter, ValidationError

from pilothouse.governance.records import Snapshot

log = logging.getLogger("pilothouse.governance")

FILE = "directory.json"
_FORMAT = 1


@dataclass(frozen=True, slots=True)
class CachedDirectory:
    """What :meth:`DirectoryCache.load` found."""

    store: str
    """The store it was read from (its URL, password hidden)."""
    at: float
    """Wall time of the sync that wrote it."""
    snapshot: Snapshot
    tokens: Mapping[str, float] = field(default_factory=dict)
    """Tokens spent per budget subject (``subject@period``), in-process budgets only."""
    money: Mapping[str, float] = field(default_factory=dict)
    """Money spent per budget subject, in-process budgets only."""
    format: int = _FORMAT


_ADAPTER: TypeAdapter[CachedDirectory] = TypeAdapter(CachedDirectory)


class DirectoryCache:
    """``<state_dir>/directory.json`` for the store labelled ``store``."""

    def __init__(self, path: Path, store: str) -> None:
        self.path = path
        self.store = store

    def save(
        self,
        snapshot: Snapshot,
        at: float,
        tokens: Mapping[str, float] | None = None,
        money: Mapping[str, float] | None = None,
    ) -> None:
        """Replace the file (blocking: call it in a worker thread). Failures are logged:
        the cache only matters for a later start."""
        cached = CachedDirectory(self.store, at, snapshot, dict(tokens or {}), dict(money or {}))
        temporary = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as out:
                out.write(_ADAPTER.dump_json(cached))
            os.replace(temporary, self.path)
        except OSError as exc:
            log.warning("could not keep the directory in %s: %s", self.path, exc)
            temporary.unlink(missing_ok=True)

    def load(self) -> CachedDirectory | None:
        """The cached directory of this store, or ``None`` (none, unreadable, another
        store's, or an older format)."""
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            log.warning("could not read the cached directory %s: %s", self.path, exc)
            return None
        try:
            cached = _ADAPTER.validate_json(raw)
        except ValidationError:
            log.warning("ignoring %s: not a directory this version wrote", self.path)
            return None
        if cached.format != _FORMAT or cached.store != self.store:
            return None
        return cached
