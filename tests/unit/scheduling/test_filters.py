"""Table-driven tests of the built-in filters."""

from __future__ import annotations

import pytest

from pilothouse.scheduling.interfaces import CycleState
from pilothouse.scheduling.plugins.filters.not_saturated import NotSaturatedFilter
from pilothouse.scheduling.plugins.filters.ready import ReadyFilter
from pilothouse.scheduling.testing import endpoint, request, run_filter
from pilothouse.scheduling.types import Endpoint

A, B, C = endpoint("a"), endpoint("b"), endpoint("c")


@pytest.mark.parametrize(
    ("endpoints", "kept"),
    [
        pytest.param([A, B, C], ["a", "b", "c"], id="all-ready"),
        pytest.param([A, endpoint("b", ready=False), C], ["a", "c"], id="one-not-ready"),
        pytest.param([endpoint("a", ready=False)], [], id="none-ready"),
        pytest.param([], [], id="empty"),
    ],
)
def test_ready_filter(endpoints: list[Endpoint], kept: list[str]) -> None:
    assert run_filter(ReadyFilter("ready"), endpoints) == kept


def test_ready_filter_returns_input_when_nothing_to_drop() -> None:
    endpoints = [A, B]
    assert ReadyFilter("ready").filter(CycleState(0.0), request(), endpoints) is endpoints


@pytest.mark.parametrize(
    ("endpoints", "kept"),
    [
        pytest.param([A, B], ["a", "b"], id="idle"),
        pytest.param([endpoint("a", waiting=10), B], ["b"], id="queue-at-threshold"),
        pytest.param([endpoint("a", waiting=9), B], ["a", "b"], id="queue-below-threshold"),
        pytest.param([endpoint("a", kv_cache_usage=0.8), B], ["b"], id="kv-at-threshold"),
        pytest.param([endpoint("a", kv_cache_usage=0.79), B], ["a", "b"], id="kv-below"),
        pytest.param(
            [endpoint("a", waiting=50), endpoint("b", kv_cache_usage=0.99)],
            ["a", "b"],
            id="all-saturated-keeps-all",
        ),
    ],
)
def test_not_saturated_filter(endpoints: list[Endpoint], kept: list[str]) -> None:
    plugin = NotSaturatedFilter("ns", max_waiting=10, max_kv_cache_usage=0.8)
    assert run_filter(plugin, endpoints) == kept
