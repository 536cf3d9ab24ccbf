"""A per-replica time-to-first-token predictor, trained online from observed requests.

Per replica (by endpoint name), :func:`~pilothouse.scheduling.latency.features.ttft_vector`
is mapped to seconds by :class:`~pilothouse.scheduling.latency.rls.RecursiveLeastSquares`
fits. It learns from the routing pipeline's lifecycle: when a request's first token arrives,
the pipeline reports the features it snapshotted when it placed the request and the time to
first token it took (:class:`LatencyObserver`).

**Weighting.** An observation of ``y`` seconds is weighted ``1 / y^p``. With ``p = 2`` the
fit minimises the squared *relative* error, which a percentage error measures, but that
estimate sits below the typical value wherever the times are spread (a cached prompt waits
for a step in flight whose phase the router cannot see), and it pulls long prefills low;
a smaller ``p`` gives the long ones more say, but lets outliers (a prompt estimated cached
that was not) pull the cached ones up. Which is better depends on the traffic, so each
replica keeps one fit per exponent of ``weight_powers`` (2, 1.5 and 1.25), scores each on
every observation before learning it, and answers with the one whose recent absolute
percentage error (an exponential average over about 100 observations) is lowest:
prequential model selection, no constant chosen per workload.

**Warm-up.** A replica's fit answers only after ``warmup`` observations; before that,
:meth:`LatencyPredictor.predict_ttft` uses the pooled fit of all replicas (identical
replicas behave alike), and ``None`` while that is cold too.

**Error.** Every observation is first predicted, then learned (prequential evaluation):
the absolute percentage error ``|predicted - observed| / observed`` of each observation
made once the replica's own fit is past its warm-up is accumulated, and :attr:`mape` is
their mean. The first ``warmup`` observations of each replica are left out, so the number
measures the trained predictor, not its cold start.

:class:`ItlPredictor` is the same model over
:func:`~pilothouse.scheduling.latency.features.itl_vector` for a request's mean inter-token
latency (one fit, ``p = 2``), learned when the request finishes (:class:`ItlObserver`).

Pure and deterministic: no clock, no randomness, no iteration over sets.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from pilothouse.scheduling.latency.features import (
    ITL_FEATURES,
    TTFT_FEATURES,
    LatencyFeatures,
    itl_vector,
    ttft_vector,
)
from pilothouse.scheduling.latency.rls import RecursiveLeastSquares

_MIN_TTFT_S = 1e-3  # floor of observations (weights) and predictions
_ERROR_DECAY = 0.99  # the fits' recent error: an exponential average over ~100 observations
WEIGHT_POWERS = (2.0, 1.5, 1.25)
"""The default exponents ``p`` of the observation weights ``1 / ttft^p`` (one fit each)."""
Vector = Callable[[LatencyFeatures], tuple[float, ...]]
_POOL = ""


@runtime_checkable
class LatencyObserver(Protocol):
    """Told each request's time to first token with the features seen when it was placed."""

    def observe_ttft(self, endpoint: str, features: LatencyFeatures, ttft_s: float) -> None: ...


@runtime_checkable
class TtftEstimator(Protocol):
    """Predicts a request's time to first token on an endpoint from its placement features
    (``None``: no estimate yet)."""

    def predict_ttft(self, endpoint: str, features: LatencyFeatures) -> float | None: ...


@runtime_checkable
class ItlObserver(Protocol):
    """Told each finished request's mean inter-token latency with its placement's features."""

    def observe_itl(self, endpoint: str, features: LatencyFeatures, itl_s: float) -> None: ...


@dataclass(frozen=True, slots=True)
class PredictionError:
    """Mean absolute percentage error over ``samples`` observations past the warm-up."""

    samples: int
    mape: float | None


class _Fits:
    """One key's fits, one per weight exponent, and each one's recent error."""

    __slots__ = ("_errors", "_fits", "_powers", "observations")

    def __init__(
        self, size: int, powers: tuple[float, ...], forgetting: float, prior: float
    ) -> None:
        self._powers = powers
        self._fits = [
            RecursiveLeastSquares(size, forgetting=forgetting, prior_variance=prior) for _ in powers
        ]
        self._errors = [0.0] * len(powers)
        self.observations = 0

    def predict(self, x: tuple[float, ...]) -> float:
        """The prediction of the fit with the lowest recent error (the first on a tie)."""
        errors = self._errors
        best = min(range(len(errors)), key=errors.__getitem__)
        return max(_MIN_TTFT_S, self._fits[best].predict(x))

    def update(self, x: tuple[float, ...], y: float) -> float:
        """Score each fit on ``(x, y)``, then teach it with its weight; returns what
        :meth:`predict` answered for ``x`` before (one prediction per fit, made once)."""
        floor = max(y, _MIN_TTFT_S)
        errors = self._errors
        guesses = [max(_MIN_TTFT_S, fit.predict(x)) for fit in self._fits]
        predicted = guesses[min(range(len(errors)), key=errors.__getitem__)]
        if self.observations and len(guesses) > 1:
            keep = _ERROR_DECAY
            for i, guess in enumerate(guesses):
                errors[i] = keep * errors[i] + (1.0 - keep) * (abs(guess - y) / floor)
        for fit, power in zip(self._fits, self._powers, strict=True):
            fit.update(x, y, 1.0 / floor**power)
        self.observations += 1
        return predicted


class LatencyPredictor:
    """Per-replica online TTFT fits, pooled while cold (see the module docstring)."""

    __slots__ = (
        "_abs_pct",
        "_fits",
        "_forgetting",
        "_powers",
        "_prior",
        "_samples",
        "_size",
        "_vector",
        "_warmup",
    )

    def __init__(
        self,
        *,
        warmup: int = 50,
        forgetting: float = 0.999,
        prior_variance: float = 1.0,
        vector: Vector = ttft_vector,
        size: int = TTFT_FEATURES,
        weight_powers: tuple[float, ...] = WEIGHT_POWERS,
    ) -> None:
        if warmup < 0:
            raise ValueError("warmup must be >= 0")
        if not weight_powers:
            raise ValueError("weight_powers needs at least one exponent")
        self._powers = weight_powers
        self._vector = vector
        self._size = size
        self._warmup = warmup
        self._forgetting = forgetting
        self._prior = prior_variance
        self._fits: dict[str, _Fits] = {}
        self._abs_pct = 0.0
        self._samples = 0

    @property
    def warmup(self) -> int:
        return self._warmup

    @property
    def error(self) -> PredictionError:
        samples = self._samples
        return PredictionError(samples, self._abs_pct / samples if samples else None)

    def observations(self, endpoint: str) -> int:
        fit = self._fits.get(endpoint)
        return fit.observations if fit is not None else 0

    def predict_ttft(self, endpoint: str, features: LatencyFeatures) -> float | None:
        """Seconds to first token of a request placed on ``endpoint`` with ``features``;
        ``None`` while neither the replica's fit nor the pooled one is warm."""
        fit = self._warm(endpoint)
        if fit is None:
            return None
        return fit.predict(self._vector(features))

    def observe_ttft(self, endpoint: str, features: LatencyFeatures, ttft_s: float) -> None:
        """Score the prediction for this observation (past warm-up), then learn from it."""
        x = self._vector(features)
        own = self._fit(endpoint)
        scored = own.observations >= self._warmup
        predicted = own.update(x, ttft_s)  # the prediction made before learning from it
        if scored:
            self._abs_pct += abs(predicted - ttft_s) / max(ttft_s, _MIN_TTFT_S)
            self._samples += 1
        self._fit(_POOL).update(x, ttft_s)

    def _warm(self, endpoint: str) -> _Fits | None:
        for key in (endpoint, _POOL):
            fit = self._fits.get(key)
            if fit is not None and fit.observations >= max(self._warmup, 1):
                return fit
        return None

    def _fit(self, key: str) -> _Fits:
        fit = self._fits.get(key)
        if fit is None:
            fit = self._fits[key] = _Fits(self._size, self._powers, self._forgetting, self._prior)
        return fit


class ItlPredictor:
    """The same online per-replica regression for the mean inter-token latency of a request
    (:func:`~pilothouse.scheduling.latency.features.itl_vector`), learned when it finishes."""

    __slots__ = ("_model",)

    def __init__(self, *, warmup: int = 50, forgetting: float = 0.999) -> None:
        self._model = LatencyPredictor(
            warmup=warmup,
            forgetting=forgetting,
            prior_variance=10.0,
            vector=itl_vector,
            size=ITL_FEATURES,
            weight_powers=(2.0,),
        )

    @property
    def error(self) -> PredictionError:
        return self._model.error

    def predict_itl(self, endpoint: str, features: LatencyFeatures) -> float | None:
        return self._model.predict_ttft(endpoint, features)

    def observe_itl(self, endpoint: str, features: LatencyFeatures, itl_s: float) -> None:
        self._model.observe_ttft(endpoint, features, itl_s)
