"""Durable agent runs on a real PostgreSQL (started here, on loopback): the runtime's
SQLite contract tests again, on a fresh database each. Select with ``-k postgres``."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest

from pilothouse.governance.agent_runs import RunBook
from pilothouse.governance.store import SqlStore
from pilothouse.testing.postgres import PostgresServer, find_bindir
from tests.unit.agents.test_agent_runtime import (  # the same contract, on PostgreSQL
    test_agent_budget_sub_agent_is_stopped_at_its_parents_remaining_budget,
    test_agent_loop_calls_a_tool_then_answers,
    test_agent_restart_after_a_crash_mid_call_never_repeats_a_non_idempotent_call,
    test_agent_waits_for_an_approval_and_sends_the_same_call_once,
)

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(find_bindir() is None, reason="PostgreSQL is not installed (make setup)"),
]

__all__ = [  # re-exported so pytest collects them here, with this module's fixtures
    "test_agent_budget_sub_agent_is_stopped_at_its_parents_remaining_budget",
    "test_agent_loop_calls_a_tool_then_answers",
    "test_agent_restart_after_a_crash_mid_call_never_repeats_a_non_idempotent_call",
    "test_agent_waits_for_an_approval_and_sends_the_same_call_once",
]

_databases = itertools.count()


@pytest.fixture(scope="module")
def postgres() -> Iterator[PostgresServer]:
    with PostgresServer() as server:
        yield server


@pytest.fixture
def book(postgres: PostgresServer) -> Iterator[RunBook]:
    store = SqlStore(postgres.create_database(f"agents{next(_databases)}"))
    store.migrate()
    assert store.dialect == "postgresql"
    yield RunBook(store)
    store.close()
