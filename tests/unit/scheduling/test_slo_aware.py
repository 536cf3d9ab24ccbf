"""The slo-aware scorer: learned TTFT against the request's target, and what it publishes."""

from __future__ import annotations

import pytest

from pilothouse.clock import ManualClock
from pilothouse.errors import ConfigError
from pilothouse.scheduling.config import load_scheduler_config
from pilothouse.scheduling.interfaces import (
    LATENCY_UNCACHED_TOKENS_KEY,
    PREFIX_MATCH_KEY,
    TTFT_ESTIMATE_KEY,
    UNCACHED_TOKENS_KEY,
    CycleState,
)
from pilothouse.scheduling.latency import LatencyFeatures, LatencyObserver, TtftEstimator
from pilothouse.scheduling.plugins.scorers.slo_aware import SloAwareParameters, SloAwareScorer
from pilothouse.scheduling.scheduler import build_scheduler
from pilothouse.scheduling.types import Endpoint, SchedulingRequest, TtftEstimate


def _ep(name: str, backlog: int = 0) -> Endpoint:
    return Endpoint(name=name, address=f"{name}:1", model="m", in_flight_tokens=backlog)


def _req(tokens: int = 1000, priority: int = 0) -> SchedulingRequest:
    return SchedulingRequest(request_id="r", model="m", prompt_tokens=tokens, priority=priority)


def _scorer(**parameters: object) -> SloAwareScorer:
    return SloAwareScorer("slo", SloAwareParameters.model_validate(parameters))


@pytest.mark.parametrize(
    ("backlogs", "match", "scores", "best"),
    [
        # cold estimate: 20 ms + (backlog + uncached) / 10,000 tok/s, target 1 s
        pytest.param((0, 0), {}, [1 - 0.12 / 2, 1 - 0.12 / 2], 0.12, id="idle"),
        pytest.param((0, 19_000), {}, [1 - 0.12 / 2, 1 / (2 * 2.02)], 0.12, id="backlog-misses"),
        pytest.param((0, 0), {"b": 0.5}, [1 - 0.12 / 2, 1 - 0.07 / 2], 0.07, id="cached-half"),
    ],
)
def test_cold_scores_follow_the_prefill_ahead_against_the_target(
    backlogs: tuple[int, int], match: dict[str, float], scores: list[float], best: float
) -> None:
    state = CycleState(now=0.0, data={PREFIX_MATCH_KEY: match})
    endpoints = [_ep("a", backlogs[0]), _ep("b", backlogs[1])]
    assert _scorer().score(state, _req(), endpoints) == pytest.approx(scores)
    estimate = state.data[TTFT_ESTIMATE_KEY]
    assert isinstance(estimate, TtftEstimate)
    assert (estimate.best_s, estimate.target_s) == (pytest.approx(best), 1.0)
    uncached = {
        "a": round(1000 * (1 - match.get("a", 0.0))),
        "b": 1000 - round(1000 * match.get("b", 0.0)),
    }
    assert state.data[UNCACHED_TOKENS_KEY] == uncached


def test_meeting_the_target_always_outranks_missing_it() -> None:
    scorer = _scorer(ttft_target_s=0.5)
    state = CycleState(now=0.0)
    # predicted 0.5 s (exactly on target) and 0.52 s
    a, b = scorer.score(state, _req(), [_ep("a", 3_800), _ep("b", 4_000)])
    assert a == pytest.approx(0.5)
    assert b < 0.5


def test_an_earlier_scorers_uncached_tokens_are_used_as_published() -> None:
    state = CycleState(now=0.0, data={UNCACHED_TOKENS_KEY: {"a": 900, "b": 0}})
    a, b = _scorer().score(state, _req(), [_ep("a"), _ep("b")])
    assert b > a
    assert state.data[UNCACHED_TOKENS_KEY] == {"a": 900, "b": 0}


def test_a_prefix_plugins_estimate_of_what_the_engine_will_find_is_what_it_predicts_with() -> None:
    """Tier-aware approx-prefix routes with one view of the offloaded tier and publishes, for
    latency, what the engine's tier really holds: the scorer predicts with that, and leaves
    the routing estimate (the backlog's) as it was."""
    routing = {"a": 0, "b": 900}
    state = CycleState(
        now=0.0,
        data={UNCACHED_TOKENS_KEY: routing, LATENCY_UNCACHED_TOKENS_KEY: {"a": 1000, "b": 900}},
    )
    a, b = _scorer().score(state, _req(), [_ep("a"), _ep("b")])
    assert b > a  # "a" was thought cached, but the engine dropped it
    assert state.data[UNCACHED_TOKENS_KEY] == routing


def test_the_target_follows_the_requests_priority() -> None:
    scorer = _scorer(ttft_target_s=2.0, ttft_targets_s={5: 0.1})
    assert scorer.target_s(_req(priority=5)) == 0.1
    assert scorer.target_s(_req(priority=0)) == 2.0
    state = CycleState(now=0.0)
    scorer.score(state, _req(priority=5), [_ep("a")])
    estimate = state.data[TTFT_ESTIMATE_KEY]
    assert isinstance(estimate, TtftEstimate)
    assert estimate.misses()
    assert not estimate.misses(margin=0.5)


def test_learned_latency_overrides_the_cold_estimate() -> None:
    scorer = _scorer(warmup=5)
    assert isinstance(scorer, LatencyObserver)
    features = LatencyFeatures(uncached_tokens=1000, prompt_tokens=1000)
    for _ in range(60):  # identical load, but "a" turns out three times slower
        scorer.observe_ttft("a", features, 0.9)
        scorer.observe_ttft("b", features, 0.3)
    a, b = scorer.score(CycleState(now=0.0), _req(), [_ep("a"), _ep("b")])
    assert b > a
    assert scorer.predict(_ep("a"), 1000, 1000) == pytest.approx(0.9, rel=0.05)


def test_it_estimates_ttft_for_the_pipelines_prefill_queue() -> None:
    """The pipeline asks it for each placed request's time alone (its features, learned or
    cold), so it is a TtftEstimator; the queue's wait on a snapshot adds to what it learns."""
    scorer = _scorer(warmup=5)
    assert isinstance(scorer, TtftEstimator)
    alone = LatencyFeatures(uncached_tokens=1000, prompt_tokens=1000)
    assert scorer.predict_ttft("a", alone) == pytest.approx(0.02 + 1000 / 10_000)  # cold
    queued = LatencyFeatures(uncached_tokens=1000, prompt_tokens=1000, wait_s=1.0)
    for _ in range(60):
        scorer.observe_ttft("a", alone, 0.3)
        scorer.observe_ttft("a", queued, 1.3)
    assert scorer.predict_ttft("a", queued) == pytest.approx(1.3, rel=0.05)
    busy = _ep("a").evolve(prefill_wait_s=1.0)
    assert scorer.predict(busy, 1000, 1000) == pytest.approx(1.3, rel=0.05)


def test_the_scheduler_reports_the_estimate_and_yaml_parameters_are_checked() -> None:
    config = load_scheduler_config(
        {
            "plugins": [
                {"type": "slo-aware", "parameters": {"ttft_target_s": 0.25}},
                {"type": "max-score"},
            ],
            "profiles": [{"name": "p", "plugins": [{"ref": "slo-aware"}, {"ref": "max-score"}]}],
        }
    )
    scheduler = build_scheduler(config, ManualClock(), seed=0)
    result = scheduler.schedule(_req(), [_ep("a", 5_000), _ep("b")])
    assert result.target.name == "b"
    assert result.uncached_tokens == 1000
    assert result.ttft_estimate == TtftEstimate(pytest.approx(0.12), 0.25)  # type: ignore[arg-type]
    bad = load_scheduler_config(
        {
            "plugins": [
                {"type": "slo-aware", "parameters": {"ttft_targets_s": {1: -1.0}}},
                {"type": "max-score"},
            ],
            "profiles": [{"name": "p", "plugins": [{"ref": "slo-aware"}, {"ref": "max-score"}]}],
        }
    )
    with pytest.raises(ConfigError) as caught:
        build_scheduler(bad, ManualClock())
    assert "plugins[0].parameters.ttft_targets_s" in str(caught.value.path)


def test_the_offload_example_mirrors_its_presets_tiers() -> None:
    from pathlib import Path

    from pilothouse.sim.presets import get_preset

    path = Path(__file__).parents[3] / "examples/scheduling/slo-aware-offload-llama-8b.yaml"
    config = load_scheduler_config(path)
    approx = next(p for p in config.plugins if p.type == "approx-prefix")
    tiers = get_preset("llama-3.1-8b-h100-offload").approx_prefix_tiers(chars_per_block=128)
    assert {k: approx.parameters[k] for k in tiers} == tiers
