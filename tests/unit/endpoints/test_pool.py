"""The endpoint pool: bookkeeping in, immutable snapshots out."""

from __future__ import annotations

import pytest

from pilothouse.endpoints.pool import EndpointPool
from pilothouse.scheduling.types import Endpoint, EndpointMetrics


def _pool() -> EndpointPool:
    pool = EndpointPool()
    pool.add(Endpoint(name="a-0", address="127.0.0.1:1", model="a"), ready=True)
    pool.add(Endpoint(name="a-1", address="127.0.0.1:2", model="a"), ready=True)
    pool.add(Endpoint(name="b-0", address="127.0.0.1:3", model="b"))
    return pool


def test_candidates_are_ready_replicas_of_the_model() -> None:
    pool = _pool()
    assert [e.name for e in pool.candidates("a")] == ["a-0", "a-1"]
    assert pool.candidates("b") == []
    pool.set_ready("b-0", True)
    assert [e.name for e in pool.candidates("b")] == ["b-0"]
    assert [e.name for e in pool.candidates("a", frozenset({"a-0"}))] == ["a-1"]


def test_draining_replicas_get_no_new_requests() -> None:
    pool = _pool()
    pool.set_draining("a-0")
    assert [e.name for e in pool.candidates("a")] == ["a-1"]


def test_in_flight_accounting_shows_in_snapshots() -> None:
    pool = _pool()
    pool.acquire("a-0", 100)
    pool.acquire("a-0", 50)
    snap = pool.get("a-0")
    assert (snap.in_flight, snap.in_flight_tokens) == (2, 150)
    pool.release("a-0", 100)
    pool.release("a-0", 50)
    pool.release("a-0", 50)  # never below zero
    assert (pool.get("a-0").in_flight, pool.get("a-0").in_flight_tokens) == (0, 0)


def test_snapshots_are_independent() -> None:
    pool = _pool()
    before = pool.get("a-0")
    pool.update_metrics("a-0", EndpointMetrics(waiting=4))
    assert before.metrics.waiting == 0
    assert pool.get("a-0").metrics.waiting == 4
    # Read-only for the type checker (``@value``): tests/unit/test_values.py.


def test_models_and_removal() -> None:
    pool = _pool()
    assert pool.models() == ["a", "b"]
    pool.remove("b-0")
    assert pool.models() == ["a"]
    assert not pool.has_model("b")
    with pytest.raises(ValueError, match="already"):
        pool.add(Endpoint(name="a-0", address="x:1", model="a"))


def test_sync_reconciles_to_the_discovered_set() -> None:
    pool = _pool()
    pool.acquire("a-0", 10)
    pool.sync(
        [
            Endpoint(name="a-0", address="127.0.0.1:1", model="a", labels={"zone": "x"}),
            Endpoint(name="a-1", address="127.0.0.1:99", model="a"),  # moved: a new endpoint
            Endpoint(name="c-0", address="127.0.0.1:5", model="c"),
        ]
    )
    assert sorted(e.name for e in pool.endpoints()) == ["a-0", "a-1", "c-0"]
    kept = pool.get("a-0")
    assert (kept.in_flight, kept.ready, kept.labels["zone"]) == (1, True, "x")
    assert pool.get("a-1").address == "127.0.0.1:99"
    assert not pool.get("a-1").ready  # new endpoints wait for their health probe
    assert not pool.has_model("b")


def test_prefill_backlog_is_counted_until_the_first_token() -> None:
    pool = _pool()
    pool.acquire("a-0", 300)
    pool.acquire("a-0", 50)
    assert (pool.get("a-0").in_flight_tokens, pool.get("a-0").awaiting_first_token) == (350, 2)
    pool.prefilled("a-0", 300)
    assert (pool.get("a-0").in_flight_tokens, pool.get("a-0").awaiting_first_token) == (50, 1)
    pool.release("a-0", None)  # the prefilled one ends
    pool.release("a-0", 50)  # the other ends before its first token was seen
    snap = pool.get("a-0")
    assert (snap.in_flight, snap.in_flight_tokens, snap.awaiting_first_token) == (0, 0, 0)
