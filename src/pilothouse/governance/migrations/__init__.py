"""The governance store's Alembic migrations, shipped in the package.

:meth:`pilothouse.governance.store.SqlStore.migrate` runs them programmatically
(``script_location`` is this directory); ``env.py`` uses the store's own connection.
"""

from __future__ import annotations

import threading
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy.engine import Connection

HERE = Path(__file__).resolve().parent
_ALEMBIC = threading.Lock()
"""Alembic's ``context`` and ``op`` are process-wide proxies: one migration at a time."""
_PG_LOCK_ID = 0x70696C6F  # "pilo": one migration at a time across PostgreSQL clients


def alembic_config(connection: Connection | None = None) -> Config:
    """Alembic's configuration for these migrations, without an ini file."""
    config = Config()
    config.set_main_option("script_location", str(HERE))
    config.attributes["connection"] = connection
    return config


def upgrade(connection: Connection, revision: str = "head") -> None:
    """Upgrade the schema behind ``connection`` to ``revision`` (a no-op when there).

    Safe to call from several threads and processes at once (gateway replicas starting
    together): on PostgreSQL a transaction-scoped advisory lock, on SQLite the write lock
    the caller's ``BEGIN IMMEDIATE`` holds, makes the others wait and then find the
    schema already there.
    """
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_PG_LOCK_ID})")
    with _ALEMBIC:
        command.upgrade(alembic_config(connection), revision)


def current(connection: Connection) -> str | None:
    """The revision the schema behind ``connection`` is at (None: not created yet)."""
    from alembic.runtime.migration import MigrationContext

    return MigrationContext.configure(connection).get_current_revision()
