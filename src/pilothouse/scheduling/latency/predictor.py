"""A per-replica time-to-first-token predictor, trained online from observed requests.

One :class:`~pilothouse.scheduling.latency.rls.RecursiveLeastSquares` fit per replica
(by endpoint name) maps :func:`~pilothouse.scheduling.latency.features.ttft_vector` to
seconds. It learns from the routing pipeline's lifecycle: when a request's first token
arrives, the pipeline reports the features it snapshotted when it placed the request and
the time to first token it took (:class:`LatencyObserver`). Observations are weighted by
``1 / ttft²`` so the fit minimises the squared *relative* error, the quantity a
percentage error measures.

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
latency, learned when the request finishes (:class:`ItlObserver`).

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
Vector = Callable[[LatencyFeatures], tuple[float, ...]]
_POOL = ""


@runtime_checkable
class LatencyObserver(Protocol):
    """Told each request's time to first token with the features seen when it was placed."""

    def observe_ttft(self, endpoint: str, features: LatencyFeatures, ttft_s: float) -> None: ...


@runtime_checkable
class ItlObserver(Protocol):
    """Told each finished request's mean inter-token latency with its placement's features."""

    def observe_itl(self, endpoint: str, features: LatencyFeatures, itl_s: float) -> None: ...


@dataclass(frozen=True, slots=True)
class PredictionError:
    """Mean absolute percentage error over ``samples`` observations past the warm-up."""

    samples: int
    mape: float | None


class LatencyPredictor:
    """Per-replica online TTFT fits, pooled while cold (see the module docstring)."""

    __slots__ = (
        "_abs_pct",
        "_fits",
        "_forgetting",
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
        prior_variance: float = 10.0,
        vector: Vector = ttft_vector,
        size: int = TTFT_FEATURES,
    ) -> None:
        if warmup < 0:
            raise ValueError("warmup must be >= 0")
        self._vector = vector
        self._size = size
        self._warmup = warmup
        self._forgetting = forgetting
        self._prior = prior_variance
        self._fits: dict[str, RecursiveLeastSquares] = {}
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
        return max(_MIN_TTFT_S, fit.predict(self._vector(features)))

    def observe_ttft(self, endpoint: str, features: LatencyFeatures, ttft_s: float) -> None:
        """Score the prediction for this observation (past warm-up), then learn from it."""
        x = self._vector(features)
        own = self._fit(endpoint)
        if own.observations >= self._warmup:
            predicted = max(_MIN_TTFT_S, own.predict(x))
            self._abs_pct += abs(predicted - ttft_s) / max(ttft_s, _MIN_TTFT_S)
            self._samples += 1
        weight = 1.0 / max(ttft_s, _MIN_TTFT_S) ** 2
        own.update(x, ttft_s, weight)
        self._fit(_POOL).update(x, ttft_s, weight)

    def _warm(self, endpoint: str) -> RecursiveLeastSquares | None:
        for key in (endpoint, _POOL):
            fit = self._fits.get(key)
            if fit is not None and fit.observations >= max(self._warmup, 1):
                return fit
        return None

    def _fit(self, key: str) -> RecursiveLeastSquares:
        fit = self._fits.get(key)
        if fit is None:
            fit = self._fits[key] = RecursiveLeastSquares(
                self._size, forgetting=self._forgetting, prior_variance=self._prior
            )
        return fit


class ItlPredictor:
    """The same online per-replica regression for the mean inter-token latency of a request
    (:func:`~pilothouse.scheduling.latency.features.itl_vector`), learned when it finishes."""

    __slots__ = ("_model",)

    def __init__(self, *, warmup: int = 50, forgetting: float = 0.999) -> None:
        self._model = LatencyPredictor(
            warmup=warmup, forgetting=forgetting, vector=itl_vector, size=ITL_FEATURES
        )

    @property
    def error(self) -> PredictionError:
        return self._model.error

    def predict_itl(self, endpoint: str, features: LatencyFeatures) -> float | None:
        return self._model.predict_ttft(endpoint, features)

    def observe_itl(self, endpoint: str, features: LatencyFeatures, itl_s: float) -> None:
        self._model.observe_ttft(endpoint, features, itl_s)
