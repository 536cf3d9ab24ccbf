"""When is a pool saturated? A pure function of the endpoint snapshots.

A replica is saturated when the front door already has ``max_in_flight_per_replica``
requests in flight on it (its own count, which never lags), or when its engine reports a
queue of at least ``max_waiting`` requests or a KV cache at least ``max_kv_cache_usage``
full (scraped, so these lag; either is optional). A pool is saturated when it has ready
replicas and every one of them is.

:func:`headroom` says how many more requests the pool takes before it is saturated: flow
control dispatches that many from its queue, no more.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from pilothouse.scheduling.types import Endpoint


@dataclass(frozen=True, slots=True)
class SaturationLimits:
    """The thresholds; ``None`` disables an engine-reported one."""

    max_in_flight_per_replica: int
    max_waiting: int | None = None
    max_kv_cache_usage: float | None = None

    def __post_init__(self) -> None:
        if self.max_in_flight_per_replica < 1:
            raise ValueError("max_in_flight_per_replica must be >= 1")
        if self.max_waiting is not None and self.max_waiting < 1:
            raise ValueError("max_waiting must be >= 1")
        usage = self.max_kv_cache_usage
        if usage is not None and not 0.0 < usage <= 1.0:
            raise ValueError("max_kv_cache_usage must be in (0, 1]")


def replica_headroom(endpoint: Endpoint, limits: SaturationLimits) -> int:
    """Requests ``endpoint`` takes before it is saturated (0 when it is, or not ready)."""
    if not endpoint.ready:
        return 0
    metrics = endpoint.metrics
    if limits.max_waiting is not None and metrics.waiting >= limits.max_waiting:
        return 0
    usage = limits.max_kv_cache_usage
    if usage is not None and metrics.kv_cache_usage >= usage:
        return 0
    return max(0, limits.max_in_flight_per_replica - endpoint.in_flight)


def headroom(endpoints: Sequence[Endpoint], limits: SaturationLimits) -> int:
    """Requests the pool takes before every replica is saturated."""
    return sum(replica_headroom(e, limits) for e in endpoints)


def saturated(endpoints: Sequence[Endpoint], limits: SaturationLimits) -> bool:
    """True when there are ready replicas and every one is saturated.

    A pool without ready replicas is not saturated: it is unavailable, which is the
    scheduler's answer (503), not flow control's (429).
    """
    return any(e.ready for e in endpoints) and headroom(endpoints, limits) == 0
