"""The pipeline's lifecycle keeps the pool's in-flight counts and prefill backlog exact."""

from __future__ import annotations

import pytest

from pilothouse.clock import ManualClock
from pilothouse.endpoints.pool import EndpointPool
from pilothouse.errors import NoEndpointAvailable
from pilothouse.routing import Route

from .conftest import REPLICA, pipeline, req


def _pool() -> EndpointPool:
    pool = EndpointPool()
    pool.add(REPLICA, ready=True)
    return pool


def test_backlog_follows_first_token_and_end(clock: ManualClock) -> None:
    pool = _pool()
    p = pipeline(pool, clock)
    one, two = p.open(req("1", tokens=400)), p.open(req("2", tokens=900))
    route = p.decide(one)
    assert isinstance(route, Route)
    p.started(one, type(route.pick)(route.pick.endpoint, (), {}, 100))  # the estimate wins
    second = p.decide(two)
    assert isinstance(second, Route)
    p.started(two, type(second.pick)(second.pick.endpoint, (), {}, None))  # whole prompt
    assert pool.get("r0").in_flight_tokens == 1000
    p.first_token(one)
    p.first_token(one)  # a second call changes nothing
    assert pool.get("r0").in_flight_tokens == 900
    p.finished(one)
    p.finished(one)  # idempotent
    p.cancelled(two)  # ended without a first token (the client left)
    snap = pool.get("r0")
    assert (snap.in_flight, snap.in_flight_tokens, snap.awaiting_first_token) == (0, 0, 0)


def test_a_retry_excludes_the_endpoints_already_tried(clock: ManualClock) -> None:
    pool = _pool()
    p = pipeline(pool, clock)
    ticket = p.open(req("1"))
    route = p.decide(ticket)
    assert isinstance(route, Route)
    p.started(ticket, route.pick)
    p.finished(ticket)  # the attempt failed before its first byte
    with pytest.raises(NoEndpointAvailable, match="no ready replica of model 'm'"):
        p.decide(ticket)
    assert ticket.last_endpoint == "r0"


def test_subset_hint_narrows_the_candidates(clock: ManualClock) -> None:
    pool = _pool()
    pool.add(REPLICA.evolve(name="r1", address="127.0.0.1:2"), ready=True)
    p = pipeline(pool, clock)
    for i in range(4):
        route = p.decide(p.open(req(str(i))), only=frozenset({"127.0.0.1:2"}))
        assert isinstance(route, Route)
        assert route.pick.endpoint.name == "r1"
    with pytest.raises(NoEndpointAvailable):
        p.decide(p.open(req("x")), only=frozenset({"10.9.9.9:1"}))


def test_moved_follows_the_data_planes_retry(clock: ManualClock) -> None:
    pool = _pool()
    pool.add(REPLICA.evolve(name="r1", address="127.0.0.1:2"), ready=True)
    p = pipeline(pool, clock)
    ticket = p.open(req("1", tokens=50))
    route = p.decide(ticket)
    assert isinstance(route, Route)
    p.started(ticket, route.pick)
    other = next(e for e in pool.endpoints() if e.name != route.pick.endpoint.name)
    p.finished(ticket)
    p.moved(ticket, other)
    assert pool.get(other.name).in_flight == 1
    assert pool.get(route.pick.endpoint.name).in_flight == 0
    p.finished(ticket)
    assert [e.in_flight_tokens for e in pool.endpoints()] == [0, 0]
