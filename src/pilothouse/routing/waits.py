"""The wait policies of the pipeline: holding for a first replica, flow control, deferral.

- **hold** (``gateway.hold``): a request for a model the executor can start, while none of
  its replicas is ready, waits in the model's bounded queue; all are released once one
  replica is ready. A full queue or a wait past ``timeout_s`` answers 503
  (:class:`~pilothouse.errors.NoEndpointAvailable`) with an OpenAI error body saying why.
- **queue** (``gateway.flow_control``): while every replica is saturated, requests wait in
  priority, then tenant round-robin, order and are released one per free slot. A request
  shed (queue full, displaced by a higher priority, or past ``queue_timeout_s``) gets 429
  with ``retry-after`` (:class:`~pilothouse.errors.RequestShed`).
- **defer** (``gateway.flow_control.slo.action: defer``): a request predicted to miss its
  TTFT target everywhere waits until a request of its model finishes, then is decided
  again; the pipeline sheds it (429) once it has been deferred for ``queue_timeout_s``.
"""

from __future__ import annotations

from collections.abc import Callable

from pilothouse.config.fleet import FlowControlSpec, HoldSpec
from pilothouse.errors import NoEndpointAvailable, PilothouseError, RequestShed
from pilothouse.routing.decision import Ticket
from pilothouse.routing.waiting import WaitPolicy
from pilothouse.scheduling.flow import EVICTED, QUEUE_FULL, Shed

_SHED_REASONS = {
    QUEUE_FULL: "every replica is saturated and the queue is full",
    EVICTED: "every replica is saturated; a higher-priority request took its place in the queue",
}
_TIMED_OUT = "every replica stayed saturated for the whole queue timeout"


def _no_grant(ticket: Ticket) -> None:
    """Released held requests go through the pipeline again: nothing to count."""


def hold_policy(spec: HoldSpec, room: Callable[[str], int]) -> WaitPolicy:
    def error(model: str, shed: Shed) -> PilothouseError:
        if shed.reason == QUEUE_FULL:
            why = f"{spec.max_queue} requests are already held for it"
        else:
            why = f"none became ready within {spec.timeout_s:g} s"
        return NoEndpointAvailable(
            f"model '{model}' has no ready replica and one is starting, but {why}; "
            "retry in a moment"
        )

    return WaitPolicy(spec.max_queue, spec.timeout_s, room, _no_grant, _no_grant, error)


def defer_policy(spec: FlowControlSpec, room: Callable[[str], int]) -> WaitPolicy:
    def error(model: str, shed: Shed) -> PilothouseError:
        return RequestShed(
            "request shed by flow control: it was deferred, predicted to miss its "
            "time-to-first-token target, and the queue is full or it waited too long",
            spec.retry_after_s,
        )

    return WaitPolicy(spec.max_queue, spec.queue_timeout_s, room, _no_grant, _no_grant, error)


def queue_policy(
    spec: FlowControlSpec,
    room: Callable[[str], int],
    grant: Callable[[Ticket], None],
    ungrant: Callable[[Ticket], None],
) -> WaitPolicy:
    def error(model: str, shed: Shed) -> PilothouseError:
        reason = _SHED_REASONS.get(shed.reason, _TIMED_OUT)
        return RequestShed(f"request shed by flow control: {reason}", spec.retry_after_s)

    return WaitPolicy(spec.max_queue, spec.queue_timeout_s, room, grant, ungrant, error)
