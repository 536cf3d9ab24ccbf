"""Table-driven tests of the ``lora-affinity`` scorer and of how a request's adapter is known."""

from __future__ import annotations

import pytest

from pilothouse.clock import ManualClock
from pilothouse.errors import ConfigError
from pilothouse.routing import with_adapter
from pilothouse.scheduling.config import load_scheduler_config
from pilothouse.scheduling.context import PluginContext
from pilothouse.scheduling.plugins.scorers.lora_affinity import (
    FREE_SLOT,
    NONE,
    RUNNING,
    WAITING,
    LoraAffinityScorer,
    adapter_affinity,
)
from pilothouse.scheduling.scheduler import build_scheduler
from pilothouse.scheduling.testing import endpoint, run_scorer
from pilothouse.scheduling.types import Endpoint, EndpointMetrics, SchedulingRequest


def _metrics(
    max_loras: int | None, running: tuple[str, ...] = (), waiting: tuple[str, ...] = ()
) -> EndpointMetrics:
    return EndpointMetrics(
        max_loras=max_loras, running_loras=frozenset(running), waiting_loras=frozenset(waiting)
    )


def _endpoint(name: str, metrics: EndpointMetrics, in_flight: int = 0) -> Endpoint:
    return endpoint(name, in_flight=in_flight).evolve(metrics=metrics)


def _request(lora: str | None, model: str = "m") -> SchedulingRequest:
    return SchedulingRequest(request_id="r", model=model, lora=lora)


@pytest.mark.parametrize(
    ("metrics", "expected"),
    [
        pytest.param(_metrics(2, running=("sql",)), RUNNING, id="running"),
        pytest.param(_metrics(1, running=("sql",), waiting=("sql",)), RUNNING, id="running+queued"),
        pytest.param(_metrics(2, running=("chat",)), FREE_SLOT, id="free-slot"),
        pytest.param(_metrics(2, waiting=("sql",)), FREE_SLOT, id="free-slot-and-waiting"),
        pytest.param(_metrics(None), FREE_SLOT, id="never-loaded-a-lora"),
        pytest.param(_metrics(1, running=("chat",), waiting=("sql",)), WAITING, id="waiting"),
        pytest.param(_metrics(2, running=("a", "b"), waiting=("c",)), NONE, id="full"),
        pytest.param(_metrics(0), NONE, id="no-lora-support"),
    ],
)
def test_adapter_affinity(metrics: EndpointMetrics, expected: float) -> None:
    assert adapter_affinity(metrics, "sql") == expected


def test_tiers_are_ordered() -> None:
    assert RUNNING > FREE_SLOT > WAITING > NONE


def test_scores_each_endpoint_for_the_requests_adapter() -> None:
    pool = [
        _endpoint("full", _metrics(1, running=("chat",))),
        _endpoint("has-it", _metrics(1, running=("sql",))),
        _endpoint("queued", _metrics(1, running=("chat",), waiting=("sql",))),
        _endpoint("free", _metrics(2, running=("chat",))),
    ]
    scores = run_scorer(LoraAffinityScorer("l"), pool, _request("sql"))
    assert scores == [NONE, RUNNING, WAITING, FREE_SLOT]


def test_requests_without_an_adapter_are_neutral() -> None:
    pool = [_endpoint("a", _metrics(1, running=("chat",))), _endpoint("b", _metrics(0))]
    assert run_scorer(LoraAffinityScorer("l"), pool, _request(None)) == [1.0, 1.0]


def test_adapter_requests_go_where_it_runs_unless_that_replica_is_much_busier() -> None:
    config = load_scheduler_config(
        {
            "plugins": [
                {"type": "lora-affinity"},
                {"type": "least-requests"},
                {"type": "max-score"},
            ],
            "profiles": [
                {
                    "name": "p",
                    "plugins": [
                        {"ref": "lora-affinity", "weight": 2},
                        {"ref": "least-requests"},
                        {"ref": "max-score"},
                    ],
                }
            ],
        }
    )
    scheduler = build_scheduler(config, ManualClock(), seed=0)
    pool = [
        _endpoint("cold", _metrics(1, running=("chat",)), in_flight=0),
        _endpoint("warm", _metrics(2, running=("sql",)), in_flight=3),
        _endpoint("idle", _metrics(2), in_flight=6),
    ]
    assert scheduler.schedule(_request("sql"), pool).target.name == "warm"
    assert scheduler.schedule(_request(None), pool).target.name == "cold"


@pytest.mark.parametrize(
    ("pool", "model", "lora"),
    [
        pytest.param([_endpoint("a", _metrics(2, running=("sql",)))], "sql", "sql", id="running"),
        pytest.param([_endpoint("a", _metrics(1, waiting=("sql",)))], "sql", "sql", id="waiting"),
        pytest.param(
            [_endpoint("a", _metrics(None)), _endpoint("b", _metrics(2, running=("sql",)))],
            "sql",
            "sql",
            id="any-candidate",
        ),
        pytest.param([_endpoint("a", _metrics(2, running=("sql",)))], "base", None, id="base"),
        pytest.param([_endpoint("a", _metrics(None))], "sql", None, id="not-loaded-anywhere"),
    ],
)
def test_the_model_names_an_adapter_when_an_engine_reports_it(
    pool: list[Endpoint], model: str, lora: str | None
) -> None:
    assert with_adapter(_request(None, model=model), pool).lora == lora


def test_an_explicit_adapter_is_kept() -> None:
    pool = [_endpoint("a", _metrics(2, running=("other",)))]
    assert with_adapter(_request("mine", model="other"), pool).lora == "mine"


def test_takes_no_parameters() -> None:
    with pytest.raises(ConfigError) as info:
        LoraAffinityScorer.create("l", {"running": 1.0}, PluginContext(ManualClock()))
    assert info.value.path == "running"
