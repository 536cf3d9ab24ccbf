"""A model's autoscaling policy: bounds, the signal, its target, and how fast to react.

The same policy drives the local executor, ``pilothouse bench sim --autoscale`` and the
rendered Kubernetes autoscaler; the decision itself is the pure function
:func:`pilothouse.autoscale.autoscale`.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from pilothouse.config.loader import SpecProblems

Metric = Literal["queue_depth", "kv_cache_usage", "ttft"]

#: The target a metric gets when the policy names none.
DEFAULT_TARGETS: dict[str, float] = {
    "queue_depth": 8.0,  # requests outstanding (running + waiting) per replica
    "kv_cache_usage": 0.7,  # mean KV-cache usage of the ready replicas, 0..1
    "ttft": 1.0,  # p90 time to first token, seconds
}
DEFAULT_IDLE_TIMEOUT_S = 300.0


class AutoscalingSpec(BaseModel):
    """Replicas between ``min_replicas`` and ``max_replicas``, following one metric."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    min_replicas: int = Field(default=1, ge=0, le=64)
    """Fewest replicas; 0 allows scale to zero after ``idle_timeout_s`` without requests."""
    max_replicas: int = Field(ge=1, le=64)
    """Most replicas."""
    metric: Metric = "queue_depth"
    """``queue_depth``: requests outstanding per replica (in flight plus held); ``kv_cache_usage``:
    mean KV-cache usage of the ready replicas; ``ttft``: p90 time to first token (s)."""
    target: float | None = Field(default=None, gt=0)
    """The value of ``metric`` to hold (default: 8 requests, 0.7, or 1.0 s)."""
    tolerance: float = Field(default=0.1, ge=0, lt=1)
    """No change while metric / target stays within 1 ± tolerance (hysteresis)."""
    window_s: float = Field(default=10.0, gt=0)
    """The metric is averaged over this many seconds of samples."""
    interval_s: float = Field(default=1.0, gt=0)
    """How often a decision is taken."""
    scale_up_stabilization_s: float = Field(default=0.0, ge=0)
    """Scale up to the lowest recommendation of this window (0: at once)."""
    scale_down_stabilization_s: float = Field(default=60.0, ge=0)
    """Scale down to the highest recommendation of this window (slow on purpose)."""
    idle_timeout_s: float | None = Field(default=None, gt=0)
    """With ``min_replicas: 0``: seconds without any request before scaling to zero
    (default 300). The first request after that is held until a replica is ready."""

    @model_validator(mode="after")
    def _consistent(self) -> AutoscalingSpec:
        problems = SpecProblems()
        if self.max_replicas < self.min_replicas:
            problems.add(
                ("max_replicas",),
                f"{self.max_replicas} is below min_replicas ({self.min_replicas})",
            )
        if self.idle_timeout_s is not None and self.min_replicas > 0:
            problems.add(
                ("idle_timeout_s",), "needs min_replicas: 0 (it is the scale-to-zero delay)"
            )
        if self.metric == "kv_cache_usage" and self.target is not None and self.target > 1:
            problems.add(("target",), "a kv_cache_usage target is a fraction in (0, 1]")
        problems.raise_if_any()
        return self

    @property
    def effective_target(self) -> float:
        return self.target if self.target is not None else DEFAULT_TARGETS[self.metric]

    @property
    def scale_to_zero_after_s(self) -> float | None:
        """Idle seconds before scaling to zero, or ``None`` when the minimum is above 0."""
        if self.min_replicas > 0:
            return None
        return self.idle_timeout_s if self.idle_timeout_s is not None else DEFAULT_IDLE_TIMEOUT_S
