"""Table-driven tests of the ``max-in-flight`` filter (cap, then shed with 429)."""

from __future__ import annotations

import pytest

from pilothouse.clock import ManualClock
from pilothouse.errors import ConfigError, RequestShed
from pilothouse.openai.errors import error_from_exception
from pilothouse.scheduling.config import load_scheduler_config
from pilothouse.scheduling.context import PluginContext
from pilothouse.scheduling.plugins.filters.max_in_flight import MaxInFlightFilter
from pilothouse.scheduling.scheduler import build_scheduler
from pilothouse.scheduling.testing import endpoint, request, run_filter
from pilothouse.scheduling.types import Endpoint


@pytest.mark.parametrize(
    ("cap", "endpoints", "kept"),
    [
        pytest.param(2, [endpoint("a"), endpoint("b")], ["a", "b"], id="idle"),
        pytest.param(2, [endpoint("a", in_flight=2), endpoint("b")], ["b"], id="one-at-cap"),
        pytest.param(2, [endpoint("a", in_flight=1), endpoint("b")], ["a", "b"], id="below-cap"),
        pytest.param(2, [endpoint("a", in_flight=5), endpoint("b", in_flight=1)], ["b"], id="over"),
        pytest.param(1, [], [], id="no-candidates-is-not-shedding"),
    ],
)
def test_keeps_endpoints_below_the_cap(
    cap: int, endpoints: list[Endpoint], kept: list[str]
) -> None:
    assert run_filter(MaxInFlightFilter("cap", max_in_flight=cap), endpoints) == kept


@pytest.mark.parametrize(
    ("cap", "in_flight"),
    [
        pytest.param(0, [0, 0], id="zero-sheds-everything"),
        pytest.param(1, [1, 3], id="all-full"),
        pytest.param(4, [4], id="single-full"),
    ],
)
def test_sheds_when_every_endpoint_is_full(cap: int, in_flight: list[int]) -> None:
    plugin = MaxInFlightFilter("cap", max_in_flight=cap, retry_after_s=2.4)
    endpoints = [endpoint(f"e{i}", in_flight=n) for i, n in enumerate(in_flight)]
    with pytest.raises(RequestShed) as caught:
        run_filter(plugin, endpoints)
    assert caught.value.retry_after == pytest.approx(2.4)
    status, _body, headers = error_from_exception(caught.value)
    assert (status, headers) == (429, {"retry-after": "2"})


@pytest.mark.parametrize(
    ("parameters", "path"),
    [
        pytest.param({}, "max_in_flight", id="required"),
        pytest.param({"max_in_flight": -1}, "max_in_flight", id="negative"),
        pytest.param({"max_in_flight": 1, "retry_after_s": 0}, "retry_after_s", id="zero-retry"),
        pytest.param({"max_in_flight": 1, "extra": 1}, "extra", id="unknown-key"),
    ],
)
def test_bad_parameters_name_the_field(parameters: dict[str, object], path: str) -> None:
    with pytest.raises(ConfigError) as caught:
        MaxInFlightFilter.create("cap", parameters, PluginContext(clock=ManualClock()))
    assert caught.value.path == path


def test_a_scheduler_with_the_filter_sheds() -> None:
    config = load_scheduler_config(
        {
            "plugins": [
                {"type": "max-in-flight", "parameters": {"max_in_flight": 1, "retry_after_s": 3}},
                {"type": "least-requests"},
                {"type": "max-score"},
            ],
            "profiles": [
                {
                    "name": "default",
                    "plugins": [
                        {"ref": "max-in-flight"},
                        {"ref": "least-requests"},
                        {"ref": "max-score"},
                    ],
                }
            ],
        }
    )
    scheduler = build_scheduler(config, ManualClock(), seed=1)
    picked = scheduler.schedule(request(), [endpoint("a", in_flight=1), endpoint("b")])
    assert picked.target.name == "b"
    with pytest.raises(RequestShed):
        scheduler.schedule(request(), [endpoint("a", in_flight=1), endpoint("b", in_flight=1)])
