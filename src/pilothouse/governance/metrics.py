"""Per-tenant Prometheus metrics: low cardinality by construction (team and model only).

Label values are team *names* (made by operators, a few hundred at most) and served model
names; keys, tokens and subjects never become labels, so neither a client nor the number of
keys can grow the series count, and no secret reaches ``/metrics``.

The request path only adds to plain integers and floats of one :class:`TenantCounts` per
(team, model); :class:`GovernanceMetrics` turns them into counter families when
``/metrics`` is scraped. A ``prometheus_client`` ``Counter`` takes a lock and goes through a
value object on every ``inc``: four of them per request cost more than the limit check
itself. Every update happens on the front door's event loop, so there is nothing to lock;
a scrape from another thread reads each number whole (the GIL), at worst one request older.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from pilothouse.governance.ledger import LedgerStats
from pilothouse.governance.records import LedgerEntry

RefusalReason = str
"""``unauthorized``, ``forbidden``, ``rate_limited`` or ``over_budget``."""


@dataclass(slots=True, eq=False)
class TenantCounts:
    """What one (team, model) was admitted and settled for, since the process started."""

    admitted: int = 0
    prompt: int = 0
    completion: int = 0
    cost: float = 0.0


class GovernanceMetrics(Collector):
    """The governance series, registered on the front door's registry."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self._tenants: dict[tuple[str, str], TenantCounts] = {}
        """Bounded as the series are: team names and served models."""
        self._refused: dict[tuple[str, str, RefusalReason], int] = {}
        self.ledger_failures = 0
        """Settled requests the ledger could not write to its local log (disk errors)."""
        self.registry.register(self)

    def tenant(self, team: str, model: str) -> TenantCounts:
        """The counts of (``team``, ``model``): callers may keep it and add to it."""
        counts = self._tenants.get((team, model))
        if counts is None:
            counts = self._tenants[(team, model)] = TenantCounts()
        return counts

    def admitted(self, team: str, model: str) -> None:
        self.tenant(team, model).admitted += 1

    def refused(self, team: str, model: str, reason: RefusalReason) -> None:
        key = (team, model, reason)
        self._refused[key] = self._refused.get(key, 0) + 1

    def used(self, team: str, model: str, entry: LedgerEntry) -> None:
        counts = self.tenant(team, model)
        counts.prompt += entry.prompt_tokens
        counts.completion += entry.completion_tokens
        counts.cost += entry.cost

    def ledger_failed(self) -> None:
        self.ledger_failures += 1

    def collect(self) -> Iterator[Metric]:
        # Counts made for a (team, model) that was never admitted (refused from its first
        # request on) export nothing: their refusals are counted apart.
        tenants = [(k, c) for k, c in list(self._tenants.items()) if c.admitted or c.prompt]
        requests = CounterMetricFamily(
            "pilothouse_tenant_requests",
            "Requests by team and model: admitted, or refused and why",
            labels=["team", "model", "outcome"],
        )
        for (team, model), counts in tenants:
            requests.add_metric([team, model, "admitted"], counts.admitted)
        for (team, model, reason), refused in list(self._refused.items()):
            requests.add_metric([team, model, reason], refused)
        yield requests
        tokens = CounterMetricFamily(
            "pilothouse_tenant_tokens",
            "Tokens settled per team and model",
            labels=["team", "model", "kind"],
        )
        cost = CounterMetricFamily(
            "pilothouse_tenant_cost",
            "Cost settled per team and model, in the budgets' currency",
            labels=["team", "model"],
        )
        for (team, model), counts in tenants:
            tokens.add_metric([team, model, "prompt"], counts.prompt)
            tokens.add_metric([team, model, "completion"], counts.completion)
            if counts.cost:  # a cost series only for teams and models that cost
                cost.add_metric([team, model], counts.cost)
        yield tokens
        yield cost
        failures = CounterMetricFamily(
            "pilothouse_ledger_record_failures",
            "Settled requests the ledger could not write to its local log (disk errors)",
        )
        failures.add_metric([], self.ledger_failures)
        yield failures


class LedgerCollector(Collector):
    """The ledger's state, read at scrape time: entries in memory, waiting on disk only
    (the backlog of a store outage), written; write failures."""

    def __init__(self, stats: Callable[[], LedgerStats]) -> None:
        self._stats = stats

    def collect(self) -> Iterator[Metric]:
        stats = self._stats()
        entries = GaugeMetricFamily(
            "pilothouse_ledger_entries",
            "Ledger entries in memory (buffered) and on local disk only (on_disk)",
            labels=["state"],
        )
        entries.add_metric(["buffered"], stats.buffered)
        entries.add_metric(["on_disk"], stats.on_disk)
        yield entries
        written = CounterMetricFamily(
            "pilothouse_ledger_written", "Ledger entries the store confirmed"
        )
        written.add_metric([], stats.written)
        yield written
        failures = CounterMetricFamily(
            "pilothouse_ledger_flush_failures", "Failed attempts to write a batch to the store"
        )
        failures.add_metric([], stats.failures)
        yield failures
