"""Table-driven tests of saturation: a pure function of endpoint snapshots."""

from __future__ import annotations

import pytest

from pilothouse.scheduling.flow import SaturationLimits, headroom, replica_headroom, saturated
from pilothouse.scheduling.testing import endpoint
from pilothouse.scheduling.types import Endpoint

CAP = SaturationLimits(max_in_flight_per_replica=4)
ENGINE = SaturationLimits(max_in_flight_per_replica=4, max_waiting=3, max_kv_cache_usage=0.9)


@pytest.mark.parametrize(
    ("limits", "replica", "room"),
    [
        pytest.param(CAP, endpoint("a"), 4, id="idle"),
        pytest.param(CAP, endpoint("a", in_flight=3), 1, id="one-left"),
        pytest.param(CAP, endpoint("a", in_flight=4), 0, id="at-cap"),
        pytest.param(CAP, endpoint("a", in_flight=9), 0, id="over-cap"),
        pytest.param(CAP, endpoint("a", ready=False), 0, id="not-ready"),
        pytest.param(CAP, endpoint("a", waiting=50, kv_cache_usage=1.0), 4, id="engine-ignored"),
        pytest.param(ENGINE, endpoint("a", waiting=3), 0, id="engine-queue"),
        pytest.param(ENGINE, endpoint("a", waiting=2), 4, id="engine-queue-below"),
        pytest.param(ENGINE, endpoint("a", kv_cache_usage=0.9), 0, id="kv-full"),
        pytest.param(ENGINE, endpoint("a", kv_cache_usage=0.5, in_flight=1), 3, id="kv-ok"),
    ],
)
def test_replica_headroom(limits: SaturationLimits, replica: Endpoint, room: int) -> None:
    assert replica_headroom(replica, limits) == room


@pytest.mark.parametrize(
    ("pool", "room", "is_saturated"),
    [
        pytest.param([endpoint("a", in_flight=4), endpoint("b", in_flight=2)], 2, False, id="some"),
        pytest.param([endpoint("a", in_flight=4), endpoint("b", in_flight=5)], 0, True, id="all"),
        pytest.param(
            [endpoint("a", in_flight=4), endpoint("b", ready=False)], 0, True, id="down-and-full"
        ),
        pytest.param([endpoint("a", ready=False)], 0, False, id="unavailable-is-not-saturated"),
        pytest.param([], 0, False, id="empty"),
    ],
)
def test_pool(pool: list[Endpoint], room: int, is_saturated: bool) -> None:
    assert headroom(pool, CAP) == room
    assert saturated(pool, CAP) is is_saturated


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_in_flight_per_replica": 0},
        {"max_in_flight_per_replica": 1, "max_waiting": 0},
        {"max_in_flight_per_replica": 1, "max_kv_cache_usage": 0.0},
        {"max_in_flight_per_replica": 1, "max_kv_cache_usage": 1.5},
    ],
)
def test_bad_limits(kwargs: dict[str, int | float]) -> None:
    with pytest.raises(ValueError, match="must be"):
        SaturationLimits(**kwargs)  # type: ignore[arg-type]
