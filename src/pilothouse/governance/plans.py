"""What one identity's requests for one model reserve, worked out once, not per request.

Admission needs the same facts for every request of a key and model: the limit subjects
(key, team, organisation, model) and their limits, the budget subjects labelled with their
period (``team_x@2026-12``) and their budgets, the model's price, the ledger's owner ids,
and the (team, model) metrics counts. An :class:`AdmissionPlan` holds them; :class:`Plans`
keeps one per (identity, model) until the directory changes (a revocation, a new quota:
the governor clears it) or, for budget labels, until the UTC day changes. Admission is
then a dictionary lookup and the counters' integer arithmetic.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from pilothouse.config.governance import PriceSpec
from pilothouse.governance.limits import Limit
from pilothouse.governance.metrics import GovernanceMetrics, TenantCounts
from pilothouse.governance.pricing import DAY_S, cost_of, period_of
from pilothouse.governance.records import Quota
from pilothouse.governance.requests import Identity

_NO_LIMIT = Limit()
"""Compared with every quota's limit when a plan is made: built once."""


@dataclass(slots=True, eq=False)
class AdmissionPlan:
    """Everything admission and settlement read for one identity's requests to one model."""

    limits: list[tuple[str, Limit]]
    """Limit subjects and their limits (key, team, organisation, model; limited ones)."""
    token_budgets: list[tuple[str, float]]
    """Budget subjects with their period (``key_x@2026-12``) and their budget in tokens."""
    money_budgets: list[tuple[str, float]]
    """The same, in money."""
    day: int
    """The UTC day (days since the epoch) the budget subjects were labelled on."""
    price: PriceSpec | None
    max_engine_cost: float
    """What ``max_request_s`` of engine time costs at ``price`` (0 without a price)."""
    counts: TenantCounts
    """The (team, model) metrics counts the request adds to."""
    key_id: str | None
    team_id: str | None
    org_id: str | None
    default_priority: int
    """The team's priority for requests that ask for none (0 without a team)."""
    open_scope: bool
    """A key whose scope lets this model in from any network: admission only caps the
    priority (and checks expiry). False for JWT identities: their scope is per token."""
    max_priority: int | None
    """The lower of the key's and the team's ``max_priority``."""


class Plans:
    """Plans per (identity, team, model); :meth:`clear` when the directory changes."""

    def __init__(
        self,
        model_limits: Mapping[str, Limit],
        prices: Mapping[str, PriceSpec],
        metrics: GovernanceMetrics,
        max_cached: int,
    ) -> None:
        self._model_limits = model_limits
        self._prices = prices
        self._metrics = metrics
        self._max_cached = max_cached
        self._plans: dict[tuple[str, str | None, str], AdmissionPlan] = {}

    def clear(self) -> None:
        self._plans.clear()

    def get(self, identity: Identity, model: str, now: float) -> AdmissionPlan:
        """The plan of ``identity``'s requests to ``model`` at ``now`` (wall time)."""
        team = identity.team
        key = (identity.subject, team.id if team is not None else None, model)
        plan = self._plans.get(key)
        if plan is not None and plan.day == int(now // DAY_S):
            return plan
        plan = self._make(identity, model, now)
        if len(self._plans) < self._max_cached or key in self._plans:
            self._plans[key] = plan
        return plan

    def _make(self, identity: Identity, model: str, now: float) -> AdmissionPlan:
        quotas = _quotas(identity)
        limits = [(s, q.limit) for s, q in quotas if q.limit != _NO_LIMIT]
        model_limit = self._model_limits.get(model)
        if model_limit is not None:
            limits.append((f"model:{model}", model_limit))
        periods = [(f"{s}@{period_of(q.budget_period, now)}", q) for s, q in quotas]
        key, team, scope = identity.key, identity.team, identity.scope
        price = self._prices.get(model)
        team_cap = team.max_priority if team is not None else None
        caps = [p for p in (scope.max_priority, team_cap) if p is not None]
        return AdmissionPlan(
            limits=limits,
            token_budgets=[(s, q.budget_tokens) for s, q in periods if q.budget_tokens is not None],
            money_budgets=[(s, q.budget_cost) for s, q in periods if q.budget_cost is not None],
            day=int(now // DAY_S),
            price=price,
            max_engine_cost=cost_of(price, 0, 0, price.max_request_s) if price else 0.0,
            counts=self._metrics.tenant(identity.team_name, model),
            key_id=key.id if key is not None else None,
            team_id=team.id if team is not None else None,
            org_id=identity.org.id if identity.org is not None else None,
            default_priority=team.default_priority if team is not None else 0,
            open_scope=key is not None
            and not scope.networks
            and (not scope.models or model in scope.models),
            max_priority=min(caps) if caps else None,
        )


def _quotas(identity: Identity) -> list[tuple[str, Quota]]:
    quotas: list[tuple[str, Quota]] = []
    if identity.key is not None:
        quotas.append((identity.key.id, identity.key.quota))
    if identity.team is not None:
        quotas.append((identity.team.id, identity.team.quota))
    if identity.org is not None:
        quotas.append((identity.org.id, identity.org.quota))
    return quotas
