"""Recursive least squares: converges to the coefficients of linear data, weights and forgets."""

from __future__ import annotations

import random

import pytest

from pilothouse.scheduling.latency import RecursiveLeastSquares

TRUE = (0.05, 0.6, -0.2)  # y = 0.05 + 0.6 a - 0.2 b


def _samples(n: int, seed: int = 1) -> list[tuple[tuple[float, ...], float]]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        x = (1.0, rng.uniform(0, 2), rng.uniform(0, 1))
        out.append((x, sum(c * v for c, v in zip(TRUE, x, strict=True))))
    return out


def test_converges_to_the_coefficients_of_noise_free_linear_data() -> None:
    fit = RecursiveLeastSquares(3, prior_variance=1e4)
    for x, y in _samples(200):
        fit.update(x, y)
    assert fit.coefficients == pytest.approx(TRUE, abs=1e-4)
    assert fit.predict((1.0, 1.0, 1.0)) == pytest.approx(0.45, abs=1e-4)
    assert fit.observations == 200


def test_weights_do_not_move_the_fit_of_exact_data_and_are_deterministic() -> None:
    a, b = (
        RecursiveLeastSquares(3, prior_variance=1e4),
        RecursiveLeastSquares(3, prior_variance=1e4),
    )
    for x, y in _samples(200):
        a.update(x, y, weight=1.0 / max(y, 0.01) ** 2)
        b.update(x, y, weight=1.0 / max(y, 0.01) ** 2)
    assert a.coefficients == pytest.approx(TRUE, abs=1e-3)
    assert a.coefficients == b.coefficients  # bit for bit


def test_noisy_data_converges_near_the_truth() -> None:
    rng = random.Random(7)
    fit = RecursiveLeastSquares(3)
    for x, y in _samples(3000, seed=3):
        fit.update(x, y + rng.gauss(0.0, 0.01))
    assert fit.coefficients == pytest.approx(TRUE, abs=0.01)


def test_forgetting_follows_a_change_that_a_full_memory_averages_away() -> None:
    forgetful, full = RecursiveLeastSquares(1, forgetting=0.95), RecursiveLeastSquares(1)
    for y in [1.0] * 500 + [3.0] * 100:
        forgetful.update((1.0,), y)
        full.update((1.0,), y)
    assert forgetful.predict((1.0,)) == pytest.approx(3.0, abs=0.02)
    assert full.predict((1.0,)) == pytest.approx(4.0 / 3.0, abs=0.01)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"features": 0}, "features"),
        ({"features": 2, "forgetting": 0.0}, "forgetting"),
        ({"features": 2, "prior_variance": 0.0}, "prior_variance"),
        ({"features": 2, "initial": [1.0]}, "initial"),
    ],
)
def test_bad_settings_are_refused(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RecursiveLeastSquares(**kwargs)  # type: ignore[arg-type]


def test_bad_observations_are_refused() -> None:
    fit = RecursiveLeastSquares(2)
    with pytest.raises(ValueError, match="expected 2 features"):
        fit.update((1.0,), 1.0)
    with pytest.raises(ValueError, match="weight"):
        fit.update((1.0, 1.0), 1.0, weight=0.0)
