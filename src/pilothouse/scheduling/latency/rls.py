"""Recursive least squares: an online linear regression, one observation at a time.

Fits ``y ≈ θ · x`` by updating ``θ`` and the inverse correlation matrix ``P`` on every
observation in O(d²) (``d``: features, a handful here), with no history kept and no
matrix inversion. A forgetting factor ``λ`` (``forgetting``) below 1 weights an
observation ``n`` steps old by ``λⁿ``, so the fit follows a replica whose behaviour drifts
(load, cache contents); 1 keeps every observation at full weight.

An observation may carry a ``weight``: the update is that of ``(√w·x, √w·y)``, i.e. the
fit minimises ``Σ w (y - θ·x)²``. With ``w = 1/y²`` that is the squared *relative* error,
which is what a percentage error (MAPE) measures.

Pure Python on purpose: ``d`` is small, numpy is not a dependency of the scheduler, and
the arithmetic is deterministic (the same observations give the same ``θ`` bit for bit).
"""

from __future__ import annotations

from collections.abc import Sequence
from operator import mul


class RecursiveLeastSquares:
    """``θ`` and ``P`` of one online linear fit (see the module docstring)."""

    __slots__ = ("_d", "_lambda", "_p", "_theta", "observations")

    def __init__(
        self,
        features: int,
        *,
        forgetting: float = 1.0,
        prior_variance: float = 1e3,
        initial: Sequence[float] | None = None,
    ) -> None:
        if features < 1:
            raise ValueError("features must be >= 1")
        if not 0.0 < forgetting <= 1.0:
            raise ValueError("forgetting must be in (0, 1]")
        if prior_variance <= 0.0:
            raise ValueError("prior_variance must be > 0")
        if initial is not None and len(initial) != features:
            raise ValueError(f"initial needs {features} coefficients, got {len(initial)}")
        self._d = features
        self._lambda = forgetting
        self._theta = [0.0] * features if initial is None else [float(v) for v in initial]
        self._p = [
            [prior_variance if i == j else 0.0 for j in range(features)] for i in range(features)
        ]
        self.observations = 0

    @property
    def coefficients(self) -> tuple[float, ...]:
        return tuple(self._theta)

    def predict(self, x: Sequence[float]) -> float:
        """``θ · x``."""
        if len(x) != self._d:
            raise ValueError(f"expected {self._d} features, got {len(x)}")
        total: float = sum(map(mul, self._theta, x))
        return total

    def update(self, x: Sequence[float], y: float, weight: float = 1.0) -> None:
        """Fold in one observation ``(x, y)`` with ``weight`` (> 0)."""
        if len(x) != self._d:
            raise ValueError(f"expected {self._d} features, got {len(x)}")
        if weight <= 0.0:
            raise ValueError("weight must be > 0")
        scale = weight**0.5
        xs = [v * scale for v in x]
        p, theta = self._p, self._theta
        # Rows and columns zipped, not indexed: the same products summed in the same order
        # (bit for bit the same fit), at half the interpreter's cost.
        px: list[float] = [sum(map(mul, row, xs)) for row in p]
        denominator = self._lambda + sum(map(mul, xs, px))
        gain = [v / denominator for v in px]
        error = y * scale - sum(map(mul, theta, xs))
        self._theta = [t + g * error for t, g in zip(theta, gain, strict=True)]
        inv = 1.0 / self._lambda
        # P ← (P - k·(Px)ᵀ) / λ; P stays symmetric since (Px)ᵀ = xᵀP for symmetric P.
        self._p = [
            [(pij - gi * pxj) * inv for pij, pxj in zip(row, px, strict=True)]
            for row, gi in zip(p, gain, strict=True)
        ]
        self.observations += 1
