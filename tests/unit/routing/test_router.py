"""The shared routing path keeps the pool's prefill backlog exact."""

from __future__ import annotations

from pilothouse.clock import ManualClock
from pilothouse.endpoints.pool import EndpointPool
from pilothouse.routing import Router
from pilothouse.scheduling.config import builtin_config
from pilothouse.scheduling.scheduler import build_scheduler
from pilothouse.scheduling.types import Endpoint, SchedulingRequest


def _router() -> Router:
    pool = EndpointPool()
    pool.add(Endpoint(name="a", address="a:1", model="m"), ready=True)
    return Router(pool, build_scheduler(builtin_config("round-robin"), ManualClock()))


def _req(request_id: str, tokens: int) -> SchedulingRequest:
    return SchedulingRequest(request_id=request_id, model="m", prompt_tokens=tokens)


def test_backlog_follows_first_token_and_end() -> None:
    router = _router()
    one, two = _req("1", 400), _req("2", 900)
    endpoint = router.pick(one).endpoint
    router.started(endpoint, one, uncached_tokens=100)  # the scheduler's estimate wins
    router.started(endpoint, two)  # no estimate: the whole prompt counts
    assert router.pool.get("a").in_flight_tokens == 1000
    router.first_token(endpoint, one)
    router.first_token(endpoint, one)  # a second call changes nothing
    assert router.pool.get("a").in_flight_tokens == 900
    router.finished(endpoint, one)
    router.finished(endpoint, two)  # ended without a first token (non-streamed)
    snap = router.pool.get("a")
    assert (snap.in_flight, snap.in_flight_tokens, snap.awaiting_first_token) == (0, 0, 0)
