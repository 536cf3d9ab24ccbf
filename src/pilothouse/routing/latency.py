"""Latency in the pipeline: who learns from observed TTFT, and flow control's SLO gate.

The pipeline snapshots a request's :class:`~pilothouse.scheduling.latency.LatencyFeatures`
when it places it and tells every :class:`~pilothouse.scheduling.latency.LatencyObserver`
the TTFT at its first token, and every :class:`~pilothouse.scheduling.latency.ItlObserver`
its mean inter-token latency when it finishes (if the front door passes the token count);
:func:`latency_observers` and :func:`itl_observers` say who those are, and
:func:`ttft_estimator` whose predictions estimate each endpoint's prefill queue. After a
scheduling cycle, :func:`slo_defers` applies ``gateway.flow_control.slo`` to the cycle's
TTFT estimate (see ``docs/flow-control.md``).
"""

from __future__ import annotations

from collections.abc import Iterable

from pilothouse.config.fleet import FlowControlSpec
from pilothouse.errors import RequestShed
from pilothouse.routing.decision import Pick, Ticket
from pilothouse.scheduling.latency import ItlObserver, LatencyObserver, TtftEstimator
from pilothouse.scheduling.scheduler import Scheduler


def latency_observers(scheduler: Scheduler, extra: Iterable[object]) -> tuple[LatencyObserver, ...]:
    """The scheduler's plugins that learn from observed TTFT (in declaration order), then
    those of ``extra`` (a benchmark's shadow predictor)."""
    return tuple(o for o in _candidates(scheduler, extra) if isinstance(o, LatencyObserver))


def itl_observers(scheduler: Scheduler, extra: Iterable[object]) -> tuple[ItlObserver, ...]:
    """The same for the inter-token latency of finished requests."""
    return tuple(o for o in _candidates(scheduler, extra) if isinstance(o, ItlObserver))


def ttft_estimator(observers: Iterable[LatencyObserver]) -> TtftEstimator | None:
    """The first of ``observers`` that also predicts time to first token: its answers feed
    each endpoint's prefill-queue estimate (:mod:`pilothouse.routing.prefill_drain`). The
    scheduler's own plugins come first, so a benchmark's shadow never changes what they see."""
    return next((o for o in observers if isinstance(o, TtftEstimator)), None)


def _candidates(scheduler: Scheduler, extra: Iterable[object]) -> list[object]:
    plugins = scheduler.plugins.values() if isinstance(scheduler, Scheduler) else ()
    return [*plugins, *extra]


def slo_defers(flow: FlowControlSpec, ticket: Ticket, pick: Pick, now: float) -> bool:
    """Flow control's SLO gate: True to defer the request; raises RequestShed to shed it.

    It acts when even the best replica's predicted TTFT is over the request's target by more
    than the margin. A request already let through by flow control's queue is not held back
    again (it holds a grant). The scheduling cycle has run, so prefix plugins have recorded
    the target as holding the prompt even if the request is shed or deferred.
    """
    gate, estimate = flow.slo, pick.ttft_estimate
    if not flow.enabled or gate.action == "off" or estimate is None or ticket.admitted:
        return False
    if not estimate.misses(gate.margin):
        return False
    since = ticket.deferred_at
    if gate.action == "shed" or (since is not None and now - since >= flow.queue_timeout_s):
        raise RequestShed(
            "request shed by flow control: its predicted time to first token "
            f"({estimate.best_s:.3g} s on the best replica) exceeds its target "
            f"({estimate.target_s:g} s)",
            flow.retry_after_s,
        )
    if since is None:
        ticket.deferred_at = now
    return True
