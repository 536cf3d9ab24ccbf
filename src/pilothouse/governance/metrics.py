"""Per-tenant Prometheus metrics: low cardinality by construction (team and model only).

Label values are team *names* (made by operators, a few hundred at most) and served model
names; keys, tokens and subjects never become labels, so neither a client nor the number of
keys can grow the series count, and no secret reaches ``/metrics``.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter

from pilothouse.governance.records import LedgerEntry

RefusalReason = str
"""``unauthorized``, ``forbidden``, ``rate_limited`` or ``over_budget``."""


class GovernanceMetrics:
    """The governance series, registered on the front door's registry."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.admissions = Counter(
            "pilothouse_tenant_requests",
            "Requests by team and model: admitted, or refused and why",
            ["team", "model", "outcome"],
            registry=self.registry,
        )
        self.tokens = Counter(
            "pilothouse_tenant_tokens",
            "Tokens settled per team and model",
            ["team", "model", "kind"],
            registry=self.registry,
        )
        self.cost = Counter(
            "pilothouse_tenant_cost",
            "Cost settled per team and model, in the budgets' currency",
            ["team", "model"],
            registry=self.registry,
        )

        self.ledger_failures = Counter(
            "pilothouse_ledger_record_failures",
            "Settled requests the ledger could not write to its local log (disk errors)",
            registry=self.registry,
        )

    def admitted(self, team: str, model: str) -> None:
        self.admissions.labels(team, model, "admitted").inc()

    def refused(self, team: str, model: str, reason: RefusalReason) -> None:
        self.admissions.labels(team, model, reason).inc()

    def used(self, team: str, model: str, entry: LedgerEntry) -> None:
        self.tokens.labels(team, model, "prompt").inc(entry.prompt_tokens)
        self.tokens.labels(team, model, "completion").inc(entry.completion_tokens)
        if entry.cost:
            self.cost.labels(team, model).inc(entry.cost)
