"""The per-tenant series: counted per (team, model), a cost series only where there is cost."""

from __future__ import annotations

from pilothouse.governance.metrics import GovernanceMetrics
from pilothouse.governance.records import LedgerEntry


def test_tenant_series_add_up_per_team_and_model_and_refusals_stay_apart() -> None:
    metrics = GovernanceMetrics()
    for _ in range(3):
        metrics.admitted("research", "m")
        metrics.used("research", "m", LedgerEntry("r", 0.0, "m", 10, 5, cost=0.5))
    metrics.admitted("ops", "m")
    metrics.used("ops", "m", LedgerEntry("r", 0.0, "m", 1, 2))
    metrics.refused("research", "m", "over_budget")
    value = metrics.registry.get_sample_value
    team = {"team": "research", "model": "m"}
    assert value("pilothouse_tenant_requests_total", team | {"outcome": "admitted"}) == 3
    assert value("pilothouse_tenant_requests_total", team | {"outcome": "over_budget"}) == 1
    assert value("pilothouse_tenant_tokens_total", team | {"kind": "prompt"}) == 30
    assert value("pilothouse_tenant_tokens_total", team | {"kind": "completion"}) == 15
    assert value("pilothouse_tenant_cost_total", team) == 1.5
    ops = {"team": "ops", "model": "m"}
    assert value("pilothouse_tenant_tokens_total", ops | {"kind": "completion"}) == 2
    assert value("pilothouse_tenant_cost_total", ops) is None  # nothing cost: no series
