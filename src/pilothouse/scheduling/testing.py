"""Helpers for testing scheduler plugins, shipped so users can test their own plugins too.

::

    from pilothouse.scheduling.testing import endpoint, request, run_scorer

    scores = run_scorer(MyScorer("mine"), [endpoint("a", in_flight=3), endpoint("b")])
"""

from __future__ import annotations

from collections.abc import Sequence

from pilothouse.scheduling.interfaces import CycleState, Filter, Picker, Scorer
from pilothouse.scheduling.types import (
    Endpoint,
    EndpointMetrics,
    SchedulingRequest,
    ScoredEndpoint,
)


def endpoint(
    name: str,
    *,
    in_flight: int = 0,
    waiting: int = 0,
    running: int = 0,
    kv_cache_usage: float = 0.0,
    ready: bool = True,
    model: str = "m",
) -> Endpoint:
    """An endpoint snapshot with the load signals the built-in plugins read."""
    metrics = EndpointMetrics(waiting=waiting, running=running, kv_cache_usage=kv_cache_usage)
    return Endpoint(
        name=name,
        address=f"{name}.local:8000",
        model=model,
        ready=ready,
        in_flight=in_flight,
        metrics=metrics,
    )


def request(prompt: str = "", *, request_id: str = "r", model: str = "m") -> SchedulingRequest:
    """A scheduling request with a prompt."""
    return SchedulingRequest(request_id=request_id, model=model, prompt=prompt)


def run_filter(
    plugin: Filter, endpoints: Sequence[Endpoint], req: SchedulingRequest | None = None
) -> list[str]:
    """Names of the endpoints a filter keeps, in order."""
    kept = plugin.filter(CycleState(now=0.0), req or request(), endpoints)
    return [e.name for e in kept]


def run_scorer(
    plugin: Scorer, endpoints: Sequence[Endpoint], req: SchedulingRequest | None = None
) -> list[float]:
    """A scorer's raw values, in endpoint order."""
    return list(plugin.score(CycleState(now=0.0), req or request(), endpoints))


def run_picker(
    plugin: Picker, scored: Sequence[tuple[Endpoint, float]], req: SchedulingRequest | None = None
) -> list[str]:
    """Names of the targets a picker returns for ``(endpoint, score)`` pairs, in order."""
    pairs = [ScoredEndpoint(e, s) for e, s in scored]
    return [e.name for e in plugin.pick(CycleState(now=0.0), req or request(), pairs)]
