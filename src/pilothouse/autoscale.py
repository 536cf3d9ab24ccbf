"""The autoscaling decision, as a pure function of a metrics window and the time.

::

    decision = autoscale(window, policy, current=2, now=clock.now(), state=state)
    state = decision.state          # keep it for the next call
    if decision.target != current: ...

The same function drives the local executor (real gateway metrics), ``bench sim`` (virtual
time) and the tests (a table of windows). It never reads a clock and has no side effects.

**Recommendation.** From the samples of the last ``window_s`` seconds:

- ``queue_depth``: ``ceil(mean outstanding requests / target)``, outstanding being the
  requests in flight on replicas plus those held by the gateway for lack of one;
- ``kv_cache_usage`` and ``ttft``: ``ceil(ready x mean value / target)``, as a Kubernetes
  HPA computes it (no data: keep the current count).

Within ``1 ± tolerance`` of the target nothing changes (hysteresis); the result is clamped
to ``[max(min_replicas, 1), max_replicas]``.

**Stabilisation.** As the HPA does, every recommendation is remembered: the target rises to
the *lowest* recommendation of the last ``scale_up_stabilization_s`` (0: at once) and falls
to the *highest* of the last ``scale_down_stabilization_s``, so it goes up fast and comes
down only after the load has stayed low for the whole window. Until the history covers a
window, the current count counts as a recommendation in it.

**Zero.** With ``min_replicas: 0``, no request in flight or held for
``idle_timeout_s`` scales to zero; from zero, the first held request scales to at least one
at once (no window).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from pilothouse.config.autoscaling import AutoscalingSpec


@dataclass(frozen=True, slots=True)
class MetricsSample:
    """One observation of a model's replicas."""

    at: float
    ready: int
    """Replicas ready to take requests."""
    in_flight: int
    """Requests running or queued on replicas (the gateway's own count)."""
    held: int = 0
    """Requests the gateway holds because no replica is ready."""
    kv_cache_usage: float | None = None
    """Mean KV-cache usage (0..1) of the ready replicas, when engines report it."""
    ttft_p90_s: float | None = None
    """p90 time to first token of the requests answered since the previous sample."""

    @property
    def outstanding(self) -> int:
        return self.in_flight + self.held


@dataclass(frozen=True, slots=True)
class MetricsWindow:
    """Recent samples, oldest first, and when the model last saw a request."""

    samples: tuple[MetricsSample, ...] = ()
    last_request_at: float | None = None

    def since(self, start: float) -> tuple[MetricsSample, ...]:
        return tuple(s for s in self.samples if s.at >= start)

    def last_active(self) -> float | None:
        """The latest request arrival, or the latest sample with work outstanding."""
        busy = [s.at for s in self.samples if s.outstanding > 0]
        times = [t for t in (self.last_request_at, max(busy, default=None)) if t is not None]
        return max(times, default=None)


@dataclass(frozen=True, slots=True)
class AutoscaleState:
    """What :func:`autoscale` remembers between calls: recent recommendations."""

    history: tuple[tuple[float, int], ...] = ()
    started_at: float | None = None


@dataclass(frozen=True, slots=True)
class ScaleDecision:
    target: int
    recommendation: int
    reason: str
    state: AutoscaleState


def autoscale(
    window: MetricsWindow,
    policy: AutoscalingSpec,
    current: int,
    now: float,
    state: AutoscaleState | None = None,
) -> ScaleDecision:
    """The replica target for a model now running ``current`` replicas (see module doc)."""
    state = state or AutoscaleState()
    started = state.started_at if state.started_at is not None else now
    latest = window.samples[-1] if window.samples else None
    held = latest.held if latest is not None else 0
    if current == 0:
        return _from_zero(window, policy, now, held)
    idle_after = policy.scale_to_zero_after_s
    last = window.last_active()
    if idle_after is not None and (latest is None or latest.outstanding == 0):
        idle_for = now - (last if last is not None else started)
        if idle_for >= idle_after:
            return ScaleDecision(0, 0, f"idle for {idle_for:.0f}s", AutoscaleState((), now))
    floor = max(policy.min_replicas, 1)
    raw = recommend(window.since(now - policy.window_s), policy, current)
    recommendation = min(max(raw, floor), policy.max_replicas)
    keep = max(policy.scale_up_stabilization_s, policy.scale_down_stabilization_s)
    history = (*(e for e in state.history if e[0] >= now - keep), (now, recommendation))
    target, reason = _stabilise(history, started, policy, current, recommendation, now)
    return ScaleDecision(target, recommendation, reason, AutoscaleState(history, started))


def _from_zero(
    window: MetricsWindow, policy: AutoscalingSpec, now: float, held: int
) -> ScaleDecision:
    if held <= 0:
        return ScaleDecision(
            policy.min_replicas, policy.min_replicas, "no request", AutoscaleState((), now)
        )
    needed = math.ceil(held / policy.effective_target) if policy.metric == "queue_depth" else 1
    target = min(max(needed, policy.min_replicas, 1), policy.max_replicas)
    history = ((now, target),)
    reason = f"{held} request(s) held with no replica"
    return ScaleDecision(target, target, reason, AutoscaleState(history, now))


def recommend(samples: Sequence[MetricsSample], policy: AutoscalingSpec, current: int) -> int:
    """The unclamped replica count the samples call for (``current`` when they say nothing).

    ``kv_cache_usage`` and ``ttft`` describe the ready replicas only: while some of the
    ``current`` replicas are still starting, they can raise the count (when the ready ones
    alone call for more than ``current``) but not lower it.
    """
    target = policy.effective_target
    if policy.metric == "queue_depth":
        if not samples:
            return current
        load = sum(s.outstanding for s in samples) / len(samples)
        ratio, wanted = load / (current * target), math.ceil(load / target)
    else:
        values = [
            (s.ready, v)
            for s in samples
            if s.ready > 0 and (v := _value(s, policy.metric)) is not None
        ]
        if not values:
            return current
        ready = values[-1][0]
        ratio = sum(v for _, v in values) / len(values) / target
        wanted = math.ceil(ready * ratio)
        if ready < current:
            return max(wanted, current)
    if abs(ratio - 1.0) <= policy.tolerance:
        return current
    return wanted


def _value(sample: MetricsSample, metric: str) -> float | None:
    return sample.kv_cache_usage if metric == "kv_cache_usage" else sample.ttft_p90_s


def _stabilise(
    history: tuple[tuple[float, int], ...],
    started: float,
    policy: AutoscalingSpec,
    current: int,
    recommendation: int,
    now: float,
) -> tuple[int, str]:
    if recommendation > current:
        up = _in_window(history, started, policy.scale_up_stabilization_s, current, now)
        target = max(current, min(up))
        reason = "scale up" if target > current else "scale up held by stabilisation window"
    elif recommendation < current:
        down = _in_window(history, started, policy.scale_down_stabilization_s, current, now)
        target = min(current, max(down))
        reason = "scale down" if target < current else "scale down held by stabilisation window"
    else:
        target, reason = current, "at target"
    return target, reason


def _in_window(
    history: tuple[tuple[float, int], ...], started: float, span: float, current: int, now: float
) -> list[int]:
    values = [r for t, r in history if t >= now - span]
    if now - started < span:  # the history does not cover the window yet
        values.append(current)
    return values
