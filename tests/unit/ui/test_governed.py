"""The tenants, approvals and audit pages' data, from a real SQLite governance store."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pilothouse.governance.limits import Limit
from pilothouse.governance.records import LedgerEntry, Quota
from pilothouse.governance.store import SqlStore
from pilothouse.ui import governed

DAY = 86_400.0


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqlStore]:
    sql = SqlStore(f"sqlite:///{tmp_path / 'gov.db'}")
    sql.migrate()
    yield sql
    sql.close()


def test_tenants_tree_with_all_time_spend_and_this_periods_budget_use(store: SqlStore) -> None:
    now = time.time()
    org = store.create_org("acme")
    team = store.create_team("acme", "research", Quota(Limit(tokens_per_min=1000)))
    quota = Quota(budget_cost=2.0, budget_period="day")
    _, key = store.create_key("research", "ci", quota=quota)
    ids = {"key_id": key.id, "team_id": team.id, "org_id": org.id}
    store.write_ledger(
        [
            LedgerEntry("old", now - 3 * DAY, "m", 100, 50, cost=1.0, **ids),  # before today
            LedgerEntry("new", now - 1, "m", 10, 5, cost=0.5, **ids),
        ]
    )
    subjects = governed.tenants(store, now)
    assert [(s.kind, s.name, s.depth) for s in subjects] == [
        ("org", "acme", 0),
        ("team", "research", 1),
        ("key", "ci", 2),
    ]
    ci = subjects[2]
    assert (ci.spend.requests, ci.spend.tokens, ci.spend.cost) == (2, 165, 1.5)
    assert (ci.spend.period_cost, ci.budget_share) == (0.5, 0.25)
    assert subjects[1].quota.limit.tokens_per_min == 1000
    assert subjects[1].budget_share is None


def test_a_revoked_key_is_still_listed_with_its_spend(store: SqlStore) -> None:
    store.create_org("acme")
    store.create_team("acme", "research")
    _, key = store.create_key("research", "old")
    store.revoke_key(key.id)
    *_, shown = governed.tenants(store, time.time())
    assert (shown.name, shown.revoked, shown.spend.requests) == ("old", True, 0)


def test_audit_pages_and_verify_on_an_empty_chain(store: SqlStore) -> None:
    assert governed.audit_page(store, 0) == []
    verdict = governed.verify(store)
    assert verdict.ok
    assert verdict.checked == 0
    assert governed.approvals(store, time.time()) == ([], [])
    assert governed.runs(store) == []
