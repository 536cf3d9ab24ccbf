"""Builders for pipeline tests: one model ``m``, one replica ``r0`` by default."""

from __future__ import annotations

import pytest

from pilothouse.clock import ManualClock
from pilothouse.config.fleet import FlowControlSpec, HoldSpec, SaturationSpec
from pilothouse.endpoints.pool import EndpointPool
from pilothouse.routing import RoutingPipeline, Ticket
from pilothouse.scheduling.config import builtin_config
from pilothouse.scheduling.scheduler import build_scheduler
from pilothouse.scheduling.types import Endpoint, SchedulingRequest

REPLICA = Endpoint(name="r0", address="127.0.0.1:1", model="m")


def flow(**changes: object) -> FlowControlSpec:
    base: dict[str, object] = {
        "enabled": True,
        "max_queue": 3,
        "queue_timeout_s": 10.0,
        "retry_after_s": 2.0,
        "saturation": SaturationSpec(max_in_flight_per_replica=1),
    }
    return FlowControlSpec.model_validate({**base, **changes})


def pipeline(
    pool: EndpointPool,
    clock: ManualClock,
    *,
    flow_spec: FlowControlSpec | None = None,
    hold: HoldSpec | None = None,
    recheck_s: float = 60.0,
) -> RoutingPipeline:
    scheduler = build_scheduler(builtin_config("round-robin"), clock)
    return RoutingPipeline(pool, scheduler, clock, flow=flow_spec, hold=hold, recheck_s=recheck_s)


def req(
    key: str, priority: int = 0, tenant: str | None = None, tokens: int = 0
) -> SchedulingRequest:
    return SchedulingRequest(
        request_id=key, model="m", priority=priority, tenant=tenant, prompt_tokens=tokens
    )


async def run(p: RoutingPipeline, ticket: Ticket) -> str:
    """Route and start, as a front door does; returns the request id."""
    routed = await p.route(ticket)
    p.started(ticket, routed.pick)
    return ticket.request.request_id


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()
