"""The governance store's database connection: engines, SQLite's pragmas, error translation.

SQLite is shared by processes (the CLI, several gateways): WAL so readers never wait for the
writer, a busy timeout so writers wait for each other, and transactions begun by us — the
sqlite3 module begins one only before DML, so a write that reads first, and the
migrations' DDL, would run outside any. PostgreSQL gets psycopg 3, a connect timeout and a
pre-ping, so a restarted server is used again without restarting the gateway.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, make_url
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import URL

from pilothouse.errors import ConfigError, Conflict, StoreUnavailable

SQLITE_BUSY_MS = 10_000
"""How long a writer waits for another process's write to the SQLite file to finish."""
CONNECT_TIMEOUT_S = 5
"""How long connecting to PostgreSQL may take before the store counts as unavailable."""
WRITE = "pilothouse_write"
"""Execution option of a connection that will write (SQLite: ``BEGIN IMMEDIATE``)."""


@contextmanager
def guard(shown_url: str) -> Iterator[None]:
    """Translate SQLAlchemy's errors into ours (``shown_url``: the URL without password)."""
    try:
        yield
    except sa_exc.IntegrityError as exc:
        raise Conflict(f"the store refused a duplicate: {reason(exc)}") from exc
    except sa_exc.DBAPIError as exc:
        raise StoreUnavailable(f"governance store {shown_url}: {reason(exc)}") from exc
    except sa_exc.SQLAlchemyError as exc:
        raise StoreUnavailable(f"governance store {shown_url}: {exc}") from exc


def normalise_url(url: str) -> URL:
    """Parse ``url``; a plain ``postgresql://`` (or ``postgres://``) gets psycopg 3."""
    try:
        parsed = make_url(url)
    except sa_exc.ArgumentError as exc:
        raise ConfigError(f"not a database URL: {exc}", path="governance.store") from exc
    if parsed.drivername in ("postgres", "postgresql"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def make_engine(url: URL) -> Engine:
    try:
        if url.get_backend_name() == "sqlite":
            return _sqlite_engine(url)
        return create_engine(
            url, pool_pre_ping=True, connect_args={"connect_timeout": CONNECT_TIMEOUT_S}
        )
    except (sa_exc.ArgumentError, sa_exc.NoSuchModuleError, ImportError) as exc:
        raise ConfigError(f"cannot use this store: {exc}", path="governance.store") from exc


def _sqlite_engine(url: URL) -> Engine:
    """SQLite shared by processes: WAL (readers never wait for the writer), a busy timeout,
    and transactions begun by us rather than by the sqlite3 module, which begins them only
    before DML: a write transaction must also cover its reads and the migrations' DDL."""
    if url.database and url.database != ":memory:":
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_MS / 1000})

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_connection: Any, _record: object) -> None:
        dbapi_connection.isolation_level = None  # we emit BEGIN ourselves (below)
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        # A writer takes the file's write lock up front (waiting out the busy timeout): a
        # deferred transaction that read first could not upgrade after another process
        # wrote, and would fail at once instead of waiting.
        immediate = conn.get_execution_options().get(WRITE, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


def reason(exc: sa_exc.DBAPIError) -> str:
    """The driver's own message, first line only (no SQL, no parameters)."""
    text = str(exc.orig) if exc.orig is not None else str(exc)
    return text.strip().splitlines()[0] if text.strip() else type(exc.orig).__name__
