"""Per-tenant Prometheus metrics: low cardinality by construction (team and model only).

Label values are team *names* (made by operators, a few hundred at most) and served model
names; keys, tokens and subjects never become labels, so neither a client nor the number of
keys can grow the series count, and no secret reaches ``/metrics``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from pilothouse.governance.ledger import LedgerStats
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

        self._children: dict[tuple[str, str], _TenantSeries] = {}
        """The series of each (team, model) seen: ``labels()`` takes a lock and hashes its
        values on every call; the children are looked up once. Bounded as the series are."""

    def _series(self, team: str, model: str) -> _TenantSeries:
        series = self._children.get((team, model))
        if series is None:
            series = _TenantSeries(
                self.admissions.labels(team, model, "admitted"),
                self.tokens.labels(team, model, "prompt"),
                self.tokens.labels(team, model, "completion"),
            )
            self._children[(team, model)] = series
        return series

    def admitted(self, team: str, model: str) -> None:
        self._series(team, model).admitted.inc()

    def refused(self, team: str, model: str, reason: RefusalReason) -> None:
        self.admissions.labels(team, model, reason).inc()

    def used(self, team: str, model: str, entry: LedgerEntry) -> None:
        series = self._series(team, model)
        series.prompt.inc(entry.prompt_tokens)
        series.completion.inc(entry.completion_tokens)
        if entry.cost:
            if series.cost is None:  # a cost series only for teams and models that cost
                series.cost = self.cost.labels(team, model)
            series.cost.inc(entry.cost)


@dataclass(slots=True)
class _TenantSeries:
    admitted: Counter
    prompt: Counter
    completion: Counter
    cost: Counter | None = None


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
