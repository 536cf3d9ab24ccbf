"""The governance store the end-to-end tests share with the front doors they start."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from pilothouse.governance.store import SqlStore


@contextlib.contextmanager
def sqlite_store(state_dir: Path) -> Iterator[SqlStore]:
    """The SQLite store a front door with ``governance.state_dir: state_dir`` uses,
    migrated; closed on exit."""
    state_dir.mkdir(parents=True, exist_ok=True)
    store = SqlStore(f"sqlite:///{state_dir / 'governance.db'}")
    try:
        store.migrate()
        yield store
    finally:
        store.close()
