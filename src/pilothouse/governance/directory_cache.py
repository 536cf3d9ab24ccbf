"""The last directory a front door read, kept on local disk: what it starts from when the
governance store is out of reach at start.

A gateway restarted during a PostgreSQL outage could not start at all: it knew no key. Now
a sync that read a new version of the directory writes ``<state_dir>/directory.json``
(atomically; mode 0600): the directory's snapshot (organisations, teams, keys as their
SHA-256 digests, scopes and quotas: what the store holds, never a key itself) and which
store it came from; and, with in-process budgets, a sync after which spending moved writes
what each subject had spent to ``<state_dir>/spent.json`` beside it. The two are apart
because spending moves on every sync under load while the directory rarely does, and the
directory grows with the keys (50,000 keys: 22 MB, 190 ms of CPU to write). A start that
cannot reach the store serves from them (:func:`~pilothouse.governance.service.
start_governance`), seeds the budgets from the spending, and writes usage ahead to the
ledger as always; the sync picks the store up when it answers. A file another store wrote,
or one that cannot be read, is ignored.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TypeVar

from pydantic import TypeAdapter, ValidationError

from pilothouse.governance.records import Snapshot

log = logging.getLogger("pilothouse.governance")
_T = TypeVar("_T")

FILE = "directory.json"
SPENT_FILE = "spent.json"
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


@dataclass(frozen=True, slots=True)
class _Spent:
    """``spent.json``: what each budget subject had spent, at a sync."""

    store: str
    at: float
    tokens: Mapping[str, float] = field(default_factory=dict)
    money: Mapping[str, float] = field(default_factory=dict)
    format: int = _FORMAT


_ADAPTER: TypeAdapter[CachedDirectory] = TypeAdapter(CachedDirectory)
_SPENT: TypeAdapter[_Spent] = TypeAdapter(_Spent)


class DirectoryCache:
    """``<state_dir>/directory.json`` (and ``spent.json`` beside it) for the store
    labelled ``store``. Every method blocks: call them in a worker thread."""

    def __init__(self, path: Path, store: str) -> None:
        self.path = path
        self.store = store
        self.spent_path = path.with_name(SPENT_FILE)

    def save_directory(self, snapshot: Snapshot, at: float) -> None:
        """Replace ``directory.json``. Failures are logged: the cache only matters for a
        later start."""
        self._replace(self.path, _ADAPTER.dump_json(CachedDirectory(self.store, at, snapshot)))

    def save_spent(
        self, at: float, tokens: Mapping[str, float], money: Mapping[str, float]
    ) -> None:
        """Replace ``spent.json`` (failures logged)."""
        spent = _Spent(self.store, at, dict(tokens), dict(money))
        self._replace(self.spent_path, _SPENT.dump_json(spent))

    def _replace(self, path: Path, content: bytes) -> None:
        temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as out:
                out.write(content)
            os.replace(temporary, path)
        except OSError as exc:
            log.warning("could not keep the directory in %s: %s", path, exc)
            temporary.unlink(missing_ok=True)

    def load(self) -> CachedDirectory | None:
        """The cached directory of this store with the latest spending kept for it, or
        ``None`` (none, unreadable, another store's, or an older format)."""
        cached = self._read(self.path, _ADAPTER)
        if cached is None or cached.format != _FORMAT or cached.store != self.store:
            return None
        spent = self._read(self.spent_path, _SPENT)
        if spent is None or spent.format != _FORMAT or spent.store != self.store:
            return cached  # spending from the directory file itself (an older version's)
        return replace(cached, at=max(cached.at, spent.at), tokens=spent.tokens, money=spent.money)

    def _read(self, path: Path, adapter: TypeAdapter[_T]) -> _T | None:
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            log.warning("could not read the cached directory %s: %s", path, exc)
            return None
        try:
            return adapter.validate_json(raw)
        except ValidationError:
            log.warning("ignoring %s: not a directory this version wrote", path)
            return None
