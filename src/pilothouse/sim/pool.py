"""The simulated cluster as the routing pipeline sees it: a :class:`PoolState`.

The cluster's replicas keep the gateway's counts themselves (:class:`SimReplica`), so the
simulator runs the same :class:`~pilothouse.routing.RoutingPipeline` as the gateway and
the endpoint picker: ``decide`` over these candidates, then ``started`` / ``first_token``
/ ``finished`` land here. Candidates are the replicas the autoscaling hook says are
serving (all of them without one), in index order, exactly as the scheduler always saw
them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from pilothouse.scheduling.types import Endpoint
from pilothouse.sim.replica import SimReplica

Serving = Callable[[], Sequence[int]]


class SimPool:
    """A :class:`~pilothouse.routing.PoolState` over the cluster's live replica tables."""

    def __init__(
        self,
        by_name: Mapping[str, SimReplica],
        endpoints: list[Endpoint],
        serving: Serving | None = None,
    ) -> None:
        self._by_name = by_name  # the cluster's own tables, updated in place
        self._endpoints = endpoints
        self._serving = serving

    def has_model(self, model: str) -> bool:
        return True  # every replica serves the cluster's one model

    def candidates(self, model: str, exclude: frozenset[str] = frozenset()) -> list[Endpoint]:
        endpoints = self._endpoints
        if self._serving is not None:
            endpoints = [endpoints[i] for i in self._serving()]
        if exclude:
            endpoints = [e for e in endpoints if e.name not in exclude]
        return endpoints

    def acquire(self, name: str, backlog_tokens: int) -> None:
        replica = self._by_name[name]
        replica.acquire(backlog_tokens)
        self._endpoints[replica.index] = replica.endpoint

    def prefilled(self, name: str, backlog_tokens: int) -> None:
        self._by_name[name].prefilled(backlog_tokens)

    def release(self, name: str, backlog_tokens: int | None) -> None:
        self._by_name[name].release(backlog_tokens)
