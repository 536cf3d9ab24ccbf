"""Learned latency: per-replica TTFT predictors trained online from the request lifecycle.

:mod:`~pilothouse.scheduling.latency.features` is what a prediction sees,
:mod:`~pilothouse.scheduling.latency.rls` the online regression,
:mod:`~pilothouse.scheduling.latency.predictor` the per-replica predictor and its error.
The ``slo-aware`` scorer reads one; the routing pipeline feeds every
:class:`LatencyObserver` (see ``docs/plugins/slo-aware.md``).
"""

from pilothouse.scheduling.latency.features import (
    ITL_FEATURES,
    TTFT_FEATURES,
    LatencyFeatures,
    itl_vector,
    latency_features,
    ttft_vector,
)
from pilothouse.scheduling.latency.predictor import (
    ItlObserver,
    ItlPredictor,
    LatencyObserver,
    LatencyPredictor,
    PredictionError,
    TtftEstimator,
)
from pilothouse.scheduling.latency.rls import RecursiveLeastSquares

__all__ = [
    "ITL_FEATURES",
    "TTFT_FEATURES",
    "ItlObserver",
    "ItlPredictor",
    "LatencyFeatures",
    "LatencyObserver",
    "LatencyPredictor",
    "PredictionError",
    "RecursiveLeastSquares",
    "TtftEstimator",
    "itl_vector",
    "latency_features",
    "ttft_vector",
]
