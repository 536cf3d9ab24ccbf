"""The tool store on a real PostgreSQL (started here, on loopback): the SQLite contract
tests again, the migration, and writers racing on the audit chain and on approvals.

One server for the module, a fresh database per test. Select with ``-k postgres``.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from pilothouse.governance.audit import AuditLog
from pilothouse.governance.store import SqlStore
from pilothouse.governance.tool_store import AuditEvent, ToolStore, args_hash
from pilothouse.testing.postgres import PostgresServer, find_bindir
from tests.unit.governance.test_tool_store import (  # the same contract, on PostgreSQL
    test_approvals_are_requested_once_per_call_and_decided,
    test_approvals_are_used_once_for_the_exact_call,
    test_approvals_expire,
    test_audit_appends_a_hash_chain,
    test_audit_detail_is_stored_as_json,
    test_audit_verify_catches_a_deleted_row,
    test_audit_verify_catches_a_rehashed_row_at_the_next_one,
    test_audit_verify_catches_an_edited_detail,
    test_audit_verify_catches_an_edited_row,
    test_audit_verify_catches_deleted_rows_at_the_end,
    test_audit_verify_catches_two_swapped_rows,
    test_pins_approving_a_server_drops_pins_of_tools_it_no_longer_offers,
    test_pins_new_tools_are_reviewed_then_approved,
    test_pins_refuse_unknown_servers_tools_and_nameless_definitions,
    test_pins_removed_tools_and_approving_some_tools_only,
    test_pins_review_and_approve_per_server,
    test_pins_review_shows_a_rug_pull_as_a_diff_with_the_invisible_text,
)

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(find_bindir() is None, reason="PostgreSQL is not installed (make setup)"),
]

__all__ = [  # re-exported so pytest collects them here, with this module's fixtures
    "test_approvals_are_requested_once_per_call_and_decided",
    "test_approvals_are_used_once_for_the_exact_call",
    "test_approvals_expire",
    "test_audit_appends_a_hash_chain",
    "test_audit_detail_is_stored_as_json",
    "test_audit_verify_catches_a_deleted_row",
    "test_audit_verify_catches_a_rehashed_row_at_the_next_one",
    "test_audit_verify_catches_an_edited_detail",
    "test_audit_verify_catches_an_edited_row",
    "test_audit_verify_catches_deleted_rows_at_the_end",
    "test_audit_verify_catches_two_swapped_rows",
    "test_pins_approving_a_server_drops_pins_of_tools_it_no_longer_offers",
    "test_pins_new_tools_are_reviewed_then_approved",
    "test_pins_refuse_unknown_servers_tools_and_nameless_definitions",
    "test_pins_removed_tools_and_approving_some_tools_only",
    "test_pins_review_and_approve_per_server",
    "test_pins_review_shows_a_rug_pull_as_a_diff_with_the_invisible_text",
]

T0 = 1_800_000_000.0
_databases = itertools.count()


@pytest.fixture(scope="module")
def postgres() -> Iterator[PostgresServer]:
    with PostgresServer() as server:
        yield server


@pytest.fixture
def database(postgres: PostgresServer) -> str:
    return postgres.create_database(f"tools{next(_databases)}")


@pytest.fixture
def sql_store(database: str) -> Iterator[SqlStore]:
    s = SqlStore(database, wall=lambda: T0)
    s.migrate()
    yield s
    s.close()


@pytest.fixture
def tools(sql_store: SqlStore) -> ToolStore:
    assert sql_store.dialect == "postgresql"
    return ToolStore(sql_store)


def test_postgres_audit_concurrent_writers_keep_one_unbroken_chain(
    sql_store: SqlStore, database: str
) -> None:
    # Two stores (two engines: as two gateway replicas would be) append batches at once.
    other = SqlStore(database, wall=lambda: T0)
    writers = [ToolStore(sql_store), ToolStore(other)]

    def write(index: int) -> int:
        store = writers[index % 2]
        for batch in range(25):
            store.append(
                [AuditEvent("call", f"s{index}", detail={"b": batch, "i": i}) for i in range(4)],
                T0,
            )
        return index

    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(write, range(4)))
    other.close()
    records = writers[0].records()
    assert [r.seq for r in records] == list(range(1, 401))
    assert [r.prev_hash for r in records[1:]] == [r.hash for r in records[:-1]]
    verdict = writers[0].verify()
    assert (verdict.ok, verdict.checked) == (True, 400)


def test_postgres_approvals_requested_concurrently_open_one(tools: ToolStore) -> None:
    digest = args_hash({"title": "x"})

    def request(_: int) -> str:
        return tools.request_approval("s1", "agent", "t", digest, "", 60, T0).id

    with ThreadPoolExecutor(max_workers=4) as pool:
        ids = set(pool.map(request, range(8)))
    assert len(ids) == 1
    (approval_id,) = ids
    tools.decide(approval_id, True, "alice", T0)
    with ThreadPoolExecutor(max_workers=4) as pool:
        used = list(pool.map(lambda _: tools.consume(approval_id, "s1", "t", digest, T0), range(8)))
    assert used.count(True) == 1


async def test_postgres_audit_log_writes_through_to_the_chain(tools: ToolStore) -> None:
    audit = AuditLog(tools, interval_s=0.01, batch_size=50)
    await audit.start()
    for n in range(120):
        audit.record(AuditEvent("call", detail={"n": n}))
    assert await audit.aclose()
    assert [r.detail["n"] for r in tools.records()] == list(range(120))
    assert tools.verify().ok


def test_postgres_tool_store_migration_is_head(sql_store: SqlStore) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from pilothouse.governance.migrations import current
    from pilothouse.governance.tables import metadata

    with sql_store._engine.connect() as conn:
        assert current(conn) == "0005"
        assert compare_metadata(MigrationContext.configure(conn), metadata) == []
