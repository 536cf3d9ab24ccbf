"""Where the default store lives and how the SQLite file is shared; migrations; errors."""

from __future__ import annotations

import sqlite3
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, inspect

from pilothouse.config.governance import GovernanceSpec
from pilothouse.errors import ConfigError, Conflict, StoreUnavailable
from pilothouse.governance.migrations import current
from pilothouse.governance.records import LedgerEntry
from pilothouse.governance.store import SqlStore, default_state_dir, open_store, store_url
from pilothouse.governance.tables import metadata


def test_default_state_dir_follows_xdg() -> None:
    assert default_state_dir({"XDG_STATE_HOME": "/s", "HOME": "/h"}) == Path("/s/pilothouse")
    assert default_state_dir({"HOME": "/h"}) == Path("/h/.local/state/pilothouse")
    assert default_state_dir({"XDG_STATE_HOME": "", "HOME": "/h"}) == Path(
        "/h/.local/state/pilothouse"
    )


def test_store_url_prefers_the_spec(tmp_path: Path) -> None:
    spec = GovernanceSpec(store="postgresql://db/x", state_dir=tmp_path)
    assert store_url(spec, tmp_path / "default") == "postgresql://db/x"
    assert store_url(GovernanceSpec(state_dir=tmp_path), Path("/nowhere")) == (
        f"sqlite:///{tmp_path / 'governance.db'}"
    )
    assert store_url(GovernanceSpec(), tmp_path) == f"sqlite:///{tmp_path / 'governance.db'}"


def test_open_store_creates_the_state_dir_and_a_wal_sqlite_file(tmp_path: Path) -> None:
    state = tmp_path / "deep" / "state"
    store = open_store(GovernanceSpec(), state)
    store.migrate()
    store.create_org("acme")
    store.close()
    with sqlite3.connect(state / "governance.db") as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_two_stores_share_one_sqlite_file(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'governance.db'}"
    cli, gateway = SqlStore(url), SqlStore(url)
    cli.migrate()
    gateway.migrate()
    before = gateway.version()
    cli.create_org("acme")
    assert gateway.version() > before
    assert [o.name for o in gateway.list_orgs()] == ["acme"]
    cli.close()
    gateway.close()


def test_sqlite_migrations_reach_head_and_twice_is_a_no_op(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'governance.db'}"
    store = SqlStore(url)
    store.migrate()
    store.create_org("acme")
    version = store.version()
    store.migrate()
    assert store.version() == version
    assert [o.name for o in store.list_orgs()] == ["acme"]
    store.close()
    engine = create_engine(url)
    with engine.connect() as conn:
        assert current(conn) == "0005"
        assert set(inspect(conn).get_table_names()) >= {"orgs", "teams", "keys", "ledger"}
        # The revision builds exactly the schema tables.py describes.
        assert compare_metadata(MigrationContext.configure(conn), metadata) == []
    engine.dispose()


def test_ledger_rows_written_before_entry_ids_keep_their_request_id_as_id(
    tmp_path: Path,
) -> None:
    # Revision 0004 moved the ledger's key from the request id (a client may repeat it) to
    # an entry id: the rows already there are kept, known by their request id.
    from pilothouse.governance.migrations import upgrade

    url = f"sqlite:///{tmp_path / 'governance.db'}"
    engine = create_engine(url)
    with engine.begin() as conn:
        upgrade(conn, "0003")
        conn.exec_driver_sql(
            "INSERT INTO ledger (request_id, at, model, prompt_tokens, completion_tokens,"
            " cost, engine_s, status) VALUES ('old-1', 1.0, 'm', 3, 4, 0.5, 0.0, 200)"
        )
    with engine.begin() as conn:
        upgrade(conn)
        assert current(conn) == "0005"
        rows = conn.exec_driver_sql("SELECT id, request_id, prompt_tokens FROM ledger").all()
        assert [tuple(r) for r in rows] == [("old-1", "old-1", 3)]
        assert compare_metadata(MigrationContext.configure(conn), metadata) == []
    engine.dispose()
    store = SqlStore(url)
    entries = [
        LedgerEntry("old-1", 2.0, "m", 1, 1, id="new-1"),
        LedgerEntry("old-1", 1.0, "m", 9, 9),
    ]
    assert store.write_ledger(entries) == 1  # a replay of the old row is still one
    (total,) = store.usage([])
    assert (total.requests, total.prompt_tokens) == (2, 4)
    store.close()


def test_an_unmigrated_store_is_unavailable(tmp_path: Path) -> None:
    store = SqlStore(f"sqlite:///{tmp_path / 'governance.db'}")
    with pytest.raises(StoreUnavailable, match="no such table"):
        store.list_orgs()
    store.close()


def test_a_bad_store_url_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"governance\.store"):
        SqlStore("not a url")
    with pytest.raises(ConfigError, match=r"governance\.store"):
        SqlStore("nosuchdb://x/y")


def test_a_stores_repr_hides_the_password() -> None:
    store = SqlStore("postgresql://alice:s3cret@127.0.0.1:1/db")
    assert "s3cret" not in repr(store)
    assert "postgresql+psycopg" in repr(store)
    store.close()


def test_sqlite_concurrent_processes_migrate_and_write_one_file(tmp_path: Path) -> None:
    # Separate engines stand for separate processes (SQLite locks per connection): a fresh
    # file migrated by all at once, then the same name claimed by all at once.
    url = f"sqlite:///{tmp_path / 'governance.db'}"
    stores = [SqlStore(url) for _ in range(4)]
    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(lambda s: s.migrate(), stores))

        def claim(store: SqlStore) -> str:
            try:
                store.create_org("acme")
            except Conflict:
                return "conflict"
            return "created"

        outcomes = sorted(pool.map(claim, stores))
        ledgers = list(pool.map(lambda s: s.write_ledger([_entry("r1"), _entry("r2")]), stores))
    assert outcomes == ["conflict", "conflict", "conflict", "created"]
    assert sum(ledgers) == 2
    assert [o.name for o in stores[0].list_orgs()] == ["acme"]
    for store in stores:
        store.close()


def _entry(request_id: str) -> LedgerEntry:
    return LedgerEntry(request_id, 1.0, "chat", 1, 1)
