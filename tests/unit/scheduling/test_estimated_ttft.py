"""Table-driven tests of the estimated-ttft scorer (prefill backlog + uncached prompt)."""

from __future__ import annotations

import pytest

from pilothouse.clock import ManualClock
from pilothouse.scheduling.config import load_scheduler_config
from pilothouse.scheduling.interfaces import (
    PREFIX_INDEX_SIZE_KEY,
    PREFIX_MATCH_KEY,
    UNCACHED_TOKENS_KEY,
    CycleState,
)
from pilothouse.scheduling.plugins.scorers.estimated_ttft import (
    EstimatedTtftParameters,
    EstimatedTtftScorer,
)
from pilothouse.scheduling.scheduler import build_scheduler
from pilothouse.scheduling.types import Endpoint, SchedulingRequest


def _ep(name: str, backlog: int) -> Endpoint:
    return Endpoint(name=name, address=f"{name}:1", model="m", in_flight_tokens=backlog)


def _req(tokens: int = 1000, prompt: str = "") -> SchedulingRequest:
    return SchedulingRequest(request_id="r", model="m", prompt=prompt, prompt_tokens=tokens)


@pytest.mark.parametrize(
    ("backlogs", "match", "margin", "scores", "uncached"),
    [
        pytest.param((0, 0), {}, 0.0, [1.0, 1.0], [1000, 1000], id="idle-cold"),
        pytest.param((0, 1000), {}, 0.0, [1.0, 1001 / 2001], [1000, 1000], id="backlog"),
        pytest.param(
            (0, 0), {"b": 0.9}, 0.0, [101 / 1001, 1.0], [1000, 100], id="warm-replica-wins"
        ),
        pytest.param(
            (0, 2000), {"b": 0.9}, 0.0, [1.0, 1001 / 2101], [1000, 100], id="warm-but-saturated"
        ),
        pytest.param(
            (0, 2000), {"b": 0.9}, 2.0, [2101 / 3001, 1.0], [1000, 100], id="margin-keeps-sticky"
        ),
    ],
)
def test_scores_follow_the_estimated_prefill_work(
    backlogs: tuple[int, int],
    match: dict[str, float],
    margin: float,
    scores: list[float],
    uncached: list[int],
) -> None:
    scorer = EstimatedTtftScorer("t", EstimatedTtftParameters(affinity_margin=margin))
    state = CycleState(now=0.0)
    state.data[PREFIX_MATCH_KEY] = match
    endpoints = [_ep("a", backlogs[0]), _ep("b", backlogs[1])]
    assert list(scorer.score(state, _req(), endpoints)) == pytest.approx(scores)
    assert state.data[UNCACHED_TOKENS_KEY] == dict(zip("ab", uncached, strict=True))


def test_scheduler_reports_the_targets_uncached_tokens() -> None:
    config = load_scheduler_config(
        {
            "plugins": [
                {"type": "approx-prefix", "parameters": {"block_size": 4}},
                {"type": "estimated-ttft"},
                {"type": "max-score"},
            ],
            "profiles": [
                {
                    "name": "p",
                    "plugins": [
                        {"ref": "approx-prefix", "weight": 0},
                        {"ref": "estimated-ttft"},
                        {"ref": "max-score"},
                    ],
                }
            ],
        }
    )
    scheduler = build_scheduler(config, ManualClock(), seed=1)
    endpoints = [_ep("a", 0), _ep("b", 0)]
    first = scheduler.schedule(_req(100, "x" * 400), endpoints)
    assert first.uncached_tokens == 100  # nothing cached anywhere yet
    again = scheduler.schedule(_req(100, "x" * 400), endpoints)
    assert again.target.name == first.target.name
    assert again.uncached_tokens == 0  # routing history: the whole prompt is there


def test_new_prefixes_go_where_the_least_is_cached() -> None:
    scorer = EstimatedTtftScorer("t", EstimatedTtftParameters(affinity_margin=3.0))
    state = CycleState(now=0.0)
    state.data[PREFIX_MATCH_KEY] = {}
    state.data[PREFIX_INDEX_SIZE_KEY] = {"a": 500, "b": 20}
    scores = scorer.score(state, _req(), [_ep("a", 0), _ep("b", 0)])
    assert scores[1] == 1.0
    assert scores[0] < 1.0


@pytest.mark.parametrize(
    ("params", "backlogs", "awaiting", "winner"),
    [
        pytest.param({}, (3000, 0), (0, 0), "b", id="cold-is-cheaper"),
        pytest.param({"cold_factor": 3.0}, (3000, 1000), (0, 0), "a", id="relative-stickiness"),
        pytest.param(
            {"queued_request_tokens": 5000.0}, (0, 0), (3, 0), "b", id="queued-requests-count"
        ),
    ],
)
def test_parameters_move_the_spill_point(
    params: dict[str, float], backlogs: tuple[int, int], awaiting: tuple[int, int], winner: str
) -> None:
    scorer = EstimatedTtftScorer("t", EstimatedTtftParameters(**params))
    state = CycleState(now=0.0)
    state.data[PREFIX_MATCH_KEY] = {"a": 0.9}  # a holds the prefix, b is cold
    endpoints = [
        Endpoint(name=n, address=f"{n}:1", model="m", in_flight_tokens=b, awaiting_first_token=w)
        for n, b, w in zip("ab", backlogs, awaiting, strict=True)
    ]
    scores = list(scorer.score(state, _req(), endpoints))
    assert "ab"[scores.index(max(scores))] == winner
