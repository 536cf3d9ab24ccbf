"""The per-replica TTFT predictor: learns synthetic latency, warm-up, pooling and its MAPE."""

from __future__ import annotations

import random

import pytest

from pilothouse.scheduling.latency import (
    ItlPredictor,
    LatencyFeatures,
    LatencyPredictor,
    latency_features,
)
from pilothouse.scheduling.types import Endpoint, EndpointMetrics


def _ttft(f: LatencyFeatures, per_token: float = 60e-6) -> float:
    """A synthetic replica: 20 ms, the wait for the prefills ahead, its own prefill at
    ``per_token``, and decode steps that read the KV cache and the running batch."""
    return (
        0.02
        + f.wait_s
        + f.uncached_tokens * per_token
        + 0.01 * f.kv_cache_usage
        + 1e-4 * (f.running)
    )


def _features(rng: random.Random) -> LatencyFeatures:
    return LatencyFeatures(
        uncached_tokens=rng.randrange(0, 8000),
        prompt_tokens=8000,
        backlog_tokens=rng.choice((0, 0, rng.randrange(0, 20000))),
        awaiting=rng.randrange(0, 3),
        in_flight=rng.randrange(0, 40),
        waiting=0,
        running=rng.randrange(0, 40),
        kv_cache_usage=rng.random(),
        wait_s=rng.choice((0.0, 0.0, rng.uniform(0.0, 2.0))),
    )


def test_features_are_read_from_the_endpoint_snapshot() -> None:
    endpoint = Endpoint(
        name="e",
        address="a",
        model="m",
        in_flight=5,
        in_flight_tokens=300,
        awaiting_first_token=2,
        metrics=EndpointMetrics(waiting=1, running=4, kv_cache_usage=0.5),
        prefill_wait_s=0.75,
    )
    assert latency_features(endpoint, 100, 900) == LatencyFeatures(
        uncached_tokens=100,
        prompt_tokens=900,
        backlog_tokens=300,
        awaiting=2,
        in_flight=5,
        waiting=1,
        running=4,
        kv_cache_usage=0.5,
        wait_s=0.75,
    )


def test_learns_a_replicas_latency_to_a_small_percentage_error() -> None:
    rng = random.Random(0)
    predictor = LatencyPredictor(warmup=50)
    for _ in range(1500):
        f = _features(rng)
        predictor.observe_ttft("r0", f, _ttft(f))
    error = predictor.error
    assert error.samples == 1450
    assert error.mape is not None
    assert error.mape < 0.05
    probe = LatencyFeatures(uncached_tokens=4000, prompt_tokens=8000, running=20)
    assert predictor.predict_ttft("r0", probe) == pytest.approx(_ttft(probe), rel=0.05)


def test_replicas_are_fitted_apart() -> None:
    rng = random.Random(1)
    predictor = LatencyPredictor(warmup=20)
    for _ in range(600):
        f = _features(rng)
        predictor.observe_ttft("fast", f, _ttft(f, 30e-6))
        predictor.observe_ttft("slow", f, _ttft(f, 120e-6))
    probe = LatencyFeatures(uncached_tokens=6000, prompt_tokens=8000)
    fast, slow = predictor.predict_ttft("fast", probe), predictor.predict_ttft("slow", probe)
    assert fast == pytest.approx(_ttft(probe, 30e-6), rel=0.1)
    assert slow == pytest.approx(_ttft(probe, 120e-6), rel=0.1)


def test_cold_replicas_use_the_pooled_fit_and_nothing_answers_before_any_is_warm() -> None:
    predictor = LatencyPredictor(warmup=3, prior_variance=1e3)  # a weak prior: 3 suffice
    f = LatencyFeatures(uncached_tokens=1000, prompt_tokens=1000)
    assert predictor.predict_ttft("a", f) is None
    for _ in range(3):
        predictor.observe_ttft("a", f, 0.5)
    assert predictor.observations("a") == 3
    assert predictor.predict_ttft("a", f) == pytest.approx(0.5, rel=0.01)
    assert predictor.observations("b") == 0
    assert predictor.predict_ttft("b", f) == pytest.approx(0.5, rel=0.01)  # pooled


def test_mape_leaves_out_each_replicas_warm_up() -> None:
    predictor = LatencyPredictor(warmup=2, prior_variance=1e3)
    f = LatencyFeatures(uncached_tokens=10)
    for endpoint in ("a", "b"):
        for _ in range(2):
            predictor.observe_ttft(endpoint, f, 1.0)
    assert predictor.error.samples == 0
    assert predictor.error.mape is None
    predicted = predictor.predict_ttft("a", f)
    assert predicted == pytest.approx(1.0, rel=0.1)
    predictor.observe_ttft("a", f, 2.0)  # predicted before it is learned
    error = predictor.error
    assert error.samples == 1
    assert error.mape == pytest.approx(abs(predicted - 2.0) / 2.0)


def test_mape_of_an_untrained_prediction_is_computed_from_its_floor() -> None:
    predictor = LatencyPredictor(warmup=0)
    predictor.observe_ttft("a", LatencyFeatures(uncached_tokens=10), 2.0)
    # a fresh fit predicts 0, floored at 1 ms: |0.001 - 2| / 2
    assert predictor.error.mape == pytest.approx(0.9995)


def test_a_negative_warmup_or_no_weighting_is_refused() -> None:
    with pytest.raises(ValueError, match="warmup"):
        LatencyPredictor(warmup=-1)
    with pytest.raises(ValueError, match="weight_powers"):
        LatencyPredictor(weight_powers=())


def _mixed_stream(seed: int) -> list[tuple[LatencyFeatures, float]]:
    """Cached prompts, 15 % of which were not cached after all (the same features, 10 x the
    time): weights ``1 / y²`` leave those outliers aside, ``1 / y^1.5`` is pulled up by them."""
    rng = random.Random(seed)
    stream = []
    for _ in range(1200):
        f = LatencyFeatures(
            uncached_tokens=rng.randrange(100, 1000), prompt_tokens=8000, running=rng.randrange(40)
        )
        y = 0.01 + f.uncached_tokens * 20e-6 + 1e-4 * f.running
        stream.append((f, y * 10 if rng.random() < 0.15 else y))
    return stream


def _mape(stream: list[tuple[LatencyFeatures, float]], powers: tuple[float, ...]) -> float:
    predictor = LatencyPredictor(warmup=50, weight_powers=powers)
    for f, y in stream:
        predictor.observe_ttft("r0", f, y)
    mape = predictor.error.mape
    assert mape is not None
    return mape


@pytest.mark.parametrize("seed", range(3))
def test_it_answers_with_whichever_weighting_errs_less_lately(seed: int) -> None:
    """One fit per weight exponent, each scored on every observation before it is learned:
    the predictor does as well as the better one alone, in whichever order they come."""
    stream = _mixed_stream(seed)
    squared, flatter = _mape(stream, (2.0,)), _mape(stream, (1.5,))
    assert squared < 0.9 * flatter
    assert _mape(stream, (2.0, 1.5)) <= 1.01 * squared
    assert _mape(stream, (1.5, 2.0)) <= 1.02 * squared  # starts on 1.5, moves to 2


def test_the_itl_predictor_learns_a_decode_step_model() -> None:
    rng = random.Random(2)
    predictor = ItlPredictor(warmup=20)

    def itl(f: LatencyFeatures) -> float:  # 13 ms a step, 30 us a sequence, context by KV use
        return 0.013 + 30e-6 * f.in_flight + 0.04 * f.kv_cache_usage

    for _ in range(600):
        f = _features(rng)
        predictor.observe_itl("r0", f, itl(f))
    assert predictor.error.samples == 580
    assert predictor.error.mape is not None
    assert predictor.error.mape < 0.05
    probe = LatencyFeatures(uncached_tokens=0, in_flight=30, kv_cache_usage=0.5)
    assert predictor.predict_itl("r0", probe) == pytest.approx(itl(probe), rel=0.05)
