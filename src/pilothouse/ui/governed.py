"""The tenants, agents, approvals and audit pages' data, read from the governance store.

Synchronous (SQLAlchemy Core): the console calls them in a worker thread. Spend comes from
the ledger (the store's ``usage`` and ``spent``), so the console shows what
``pilothouse usage`` does.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from pilothouse.errors import PilothouseError
from pilothouse.governance.agent_runs import RunBook, RunRecord, StepRecord
from pilothouse.governance.ports import Store
from pilothouse.governance.pricing import period_start
from pilothouse.governance.records import BudgetPeriod, KeyRecord, Quota, UsageRow
from pilothouse.governance.store import SqlStore
from pilothouse.governance.tool_audit import AuditBook
from pilothouse.governance.tool_records import Approval, AuditRecord, AuditVerdict
from pilothouse.governance.tool_store import ToolStore

AUDIT_PAGE = 100


@dataclass(frozen=True, slots=True)
class Spend:
    """A subject's ledger totals (all time) and what it spent in its budget's period."""

    requests: int = 0
    tokens: int = 0
    cost: float = 0.0
    period_tokens: float = 0.0
    period_cost: float = 0.0


@dataclass(frozen=True, slots=True)
class Subject:
    """An organisation, team or key with its quota and spend."""

    kind: str
    id: str
    name: str
    quota: Quota
    spend: Spend
    depth: int
    shown: str = ""
    revoked: bool = False

    @property
    def budget_share(self) -> float | None:
        """The larger of cost and token budget used this period (None: no budget)."""
        shares = []
        if self.quota.budget_cost:
            shares.append(self.spend.period_cost / self.quota.budget_cost)
        if self.quota.budget_tokens:
            shares.append(self.spend.period_tokens / self.quota.budget_tokens)
        return max(shares) if shares else None


def tenants(store: Store, now: float) -> list[Subject]:
    """Orgs, their teams and the teams' keys (revoked ones too), in tree order."""
    totals = {
        dimension: {row.group[0]: row for row in store.usage([dimension])}
        for dimension in ("org", "team", "key")
    }
    periods: dict[BudgetPeriod, Mapping[str, tuple[float, float]]] = {}

    def spend(kind: str, subject: str, quota: Quota) -> Spend:
        period = quota.budget_period
        if period not in periods:
            periods[period] = store.spent(period_start(period, now))
        used = periods[period].get(subject, (0.0, 0.0))
        row: UsageRow | None = totals[kind].get(subject)
        if row is None:
            return Spend(period_tokens=used[0], period_cost=used[1])
        tokens = row.prompt_tokens + row.completion_tokens
        return Spend(row.requests, tokens, row.cost, used[0], used[1])

    keys: dict[str, list[KeyRecord]] = {}
    for key in store.list_keys(revoked=True):
        keys.setdefault(key.team_id, []).append(key)
    out: list[Subject] = []
    for org in store.list_orgs():
        out.append(Subject("org", org.id, org.name, org.quota, spend("org", org.id, org.quota), 0))
        for team in store.list_teams(org.id):
            out.append(
                Subject(
                    "team", team.id, team.name, team.quota, spend("team", team.id, team.quota), 1
                )
            )
            for key in keys.get(team.id, []):
                out.append(
                    Subject(
                        "key",
                        key.id,
                        key.name,
                        key.quota,
                        spend("key", key.id, key.quota),
                        2,
                        key.shown,
                        key.revoked_at is not None,
                    )
                )
    return out


def runs(store: Store, limit: int = 50) -> list[RunRecord]:
    return RunBook(_sql(store)).list_runs(limit=limit, children=True)


def run_detail(store: Store, run_id: str) -> tuple[RunRecord, list[StepRecord]]:
    """NotFound when there is no such run."""
    book = RunBook(_sql(store))
    return book.get_run(run_id), book.steps(run_id)


def approvals(store: Store, now: float) -> tuple[list[Approval], list[Approval]]:
    """Pending approvals (oldest first) and the 50 latest others (newest first)."""
    every = ToolStore(_sql(store)).list_approvals(None, now)
    pending = [a for a in every if a.status == "pending"]
    others = [a for a in every if a.status != "pending"]
    return pending, others[::-1][:50]


def decide(store: Store, approval_id: str, approve: bool, by: str, now: float) -> Approval:
    return ToolStore(_sql(store)).decide(approval_id, approve, by, now)


def audit_page(store: Store, after: int) -> list[AuditRecord]:
    return AuditBook(_sql(store)).records(after, AUDIT_PAGE)


def verify(store: Store) -> AuditVerdict:
    return AuditBook(_sql(store)).verify()


class NotSql(PilothouseError):
    """Agent runs, approvals and the audit log live in a SQL store only."""


def _sql(store: Store) -> SqlStore:
    if not isinstance(store, SqlStore):
        raise NotSql("agent runs, approvals and the audit log live in a SQL governance store")
    return store
