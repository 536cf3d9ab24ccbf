"""The governance store on a real PostgreSQL (started here, on loopback): the SQLite
contract tests again, migrations, concurrent ledger writers, and an outage.

One server for the module, a fresh database per test. Select with ``-k postgres``.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine

from pilothouse.errors import StoreUnavailable
from pilothouse.governance.migrations import current
from pilothouse.governance.records import LedgerEntry
from pilothouse.governance.store import SqlStore
from pilothouse.governance.tables import metadata
from pilothouse.testing.postgres import PostgresServer, find_bindir
from tests.unit.governance.test_store import (  # the same contract, on PostgreSQL
    Wall,
    test_store_asks_for_org_slash_team_when_a_team_name_is_ambiguous,
    test_store_checks_names_and_key_kinds,
    test_store_creates_and_lists_orgs_teams_and_keys,
    test_store_groups_ledger_usage,
    test_store_keeps_a_keys_scope_and_quota,
    test_store_keeps_entries_that_share_a_request_id,
    test_store_raises_not_found_for_unknown_names,
    test_store_refuses_taken_names_with_conflict,
    test_store_replaces_quotas_of_orgs_teams_and_keys,
    test_store_revokes_keys_once,
    test_store_satisfies_the_protocol,
    test_store_snapshot_holds_orgs_teams_and_live_keys,
    test_store_spent_per_key_team_and_org,
    test_store_usage_of_an_empty_ledger,
    test_store_version_grows_with_every_change_and_only_then,
    test_store_writes_the_ledger_once_per_request_id,
    wall,
)

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(find_bindir() is None, reason="PostgreSQL is not installed (make setup)"),
]

__all__ = [  # re-exported so pytest collects them here, with this module's store fixture
    "Wall",
    "test_store_asks_for_org_slash_team_when_a_team_name_is_ambiguous",
    "test_store_checks_names_and_key_kinds",
    "test_store_creates_and_lists_orgs_teams_and_keys",
    "test_store_groups_ledger_usage",
    "test_store_keeps_a_keys_scope_and_quota",
    "test_store_keeps_entries_that_share_a_request_id",
    "test_store_raises_not_found_for_unknown_names",
    "test_store_refuses_taken_names_with_conflict",
    "test_store_replaces_quotas_of_orgs_teams_and_keys",
    "test_store_revokes_keys_once",
    "test_store_satisfies_the_protocol",
    "test_store_snapshot_holds_orgs_teams_and_live_keys",
    "test_store_spent_per_key_team_and_org",
    "test_store_usage_of_an_empty_ledger",
    "test_store_version_grows_with_every_change_and_only_then",
    "test_store_writes_the_ledger_once_per_request_id",
    "wall",
]


@pytest.fixture(scope="module")
def postgres() -> Iterator[PostgresServer]:
    with PostgresServer() as server:
        yield server


@pytest.fixture
def database(postgres: PostgresServer) -> str:
    return postgres.create_database(f"t{next(_databases)}")


_databases = itertools.count()


@pytest.fixture
def store(database: str, wall: Wall) -> Iterator[SqlStore]:
    s = SqlStore(database, wall=wall)
    s.migrate()
    yield s
    s.close()


def test_postgres_migrations_reach_head_and_twice_is_a_no_op(database: str) -> None:
    store = SqlStore(database)
    store.migrate()
    store.create_org("acme")
    version = store.version()
    store.migrate()
    assert store.version() == version
    assert store.dialect == "postgresql"
    store.close()
    engine = create_engine(database)
    with engine.connect() as conn:
        assert current(conn) == "0005"
        assert compare_metadata(MigrationContext.configure(conn), metadata) == []
    engine.dispose()


def test_postgres_concurrent_ledger_writers_count_each_request_once(store: SqlStore) -> None:
    # Eight writers replay overlapping batches (as gateways do after a crash): every
    # request id is new exactly once across all of them.
    batches = [
        [LedgerEntry(f"r{i}", 1.0, "chat", 1, 1) for i in range(start, start + 200)]
        for start in range(0, 800, 100)
    ]
    with ThreadPoolExecutor(max_workers=8) as pool:
        new = sum(pool.map(store.write_ledger, batches))
    assert new == 900
    assert store.usage([])[0].requests == 900


def test_postgres_outage_raises_store_unavailable_and_recovers(
    postgres: PostgresServer, store: SqlStore
) -> None:
    store.create_org("acme")
    postgres.stop()
    try:
        with pytest.raises(StoreUnavailable, match=r"127\.0\.0\.1"):
            store.version()
        with pytest.raises(StoreUnavailable):
            store.write_ledger([LedgerEntry("r1", 1.0, "chat", 1, 1)])
    finally:
        postgres.start()
    # The pooled connections died with the server; the store reconnects by itself.
    assert [o.name for o in store.list_orgs()] == ["acme"]
    assert store.write_ledger([LedgerEntry("r1", 1.0, "chat", 1, 1)]) == 1


def test_postgres_concurrent_migrations_of_a_fresh_database(postgres: PostgresServer) -> None:
    url = postgres.create_database("fresh_concurrent")
    stores = [SqlStore(url) for _ in range(4)]
    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(lambda s: s.migrate(), stores))
    assert stores[0].version() == 1
    for store in stores:
        store.close()
