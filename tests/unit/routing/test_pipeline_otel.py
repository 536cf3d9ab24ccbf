"""The pipeline's part of a request's span: time held or queued, the decision, the replica;
and nothing at all for a ticket without a trace."""

from __future__ import annotations

import asyncio

import pytest

pytest.importorskip("opentelemetry.sdk")

from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from pilothouse.clock import ManualClock
from pilothouse.config.fleet import HoldSpec
from pilothouse.config.tracing import TracingSpec
from pilothouse.endpoints.pool import EndpointPool
from pilothouse.telemetry.provider import Tracing, start_tracing

from .conftest import REPLICA, flow, pipeline, req, run


def _tracing(detail: bool = False) -> tuple[Tracing, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    spec = TracingSpec(endpoint="http://unused:4318/v1/traces", decision_detail=detail)
    return start_tracing(spec, "test", exporter=exporter), exporter


async def test_otel_time_held_is_on_the_span(clock: ManualClock) -> None:
    tracing, exporter = _tracing()
    pool = EndpointPool()
    p = pipeline(pool, clock, hold=HoldSpec(max_queue=4, timeout_s=30))
    p.hold_for(["m"], lambda model: None)
    ticket = p.open(req("1"))
    ticket.trace = tracing.request("/v1/chat/completions", "m", {}.get)
    waiter = asyncio.create_task(run(p, ticket))
    await asyncio.sleep(0)
    clock.advance(2.5)  # the replica takes 2.5 s to start
    pool.add(REPLICA, ready=True)
    p.waiting.poll()
    await waiter
    ticket.trace.end(200)
    (span,) = exporter.get_finished_spans()
    attributes = dict(span.attributes or {})
    assert attributes["pilothouse.queue_wait_ms"] == 2500.0
    assert attributes["pilothouse.endpoint"] == "r0"
    assert attributes["server.address"] == "127.0.0.1"
    assert attributes["server.port"] == 1


async def test_otel_time_queued_by_flow_control_adds_up(clock: ManualClock) -> None:
    tracing, exporter = _tracing(detail=True)
    pool = EndpointPool()
    pool.add(REPLICA, ready=True)
    p = pipeline(pool, clock, flow_spec=flow())
    first = p.open(req("1"))
    await run(p, first)  # takes the one slot
    second = p.open(req("2"))
    second.trace = tracing.request("/v1/completions", "m", {}.get)
    waiter = asyncio.create_task(run(p, second))
    await asyncio.sleep(0)
    clock.advance(0.75)
    p.finished(first)
    await waiter
    second.trace.end(200)
    (span,) = exporter.get_finished_spans()
    attributes = dict(span.attributes or {})
    assert span.name == "text_completion m"
    assert attributes["pilothouse.queue_wait_ms"] == 750.0
    assert attributes["pilothouse.profile"] == "default"
    assert "pilothouse.runner_up" not in attributes  # one replica: no runner-up
    # round-robin has no scorers: the detail has nothing to add
    assert not any(k.startswith("pilothouse.endpoint.scorer.") for k in attributes)


def test_otel_a_ticket_without_a_trace_is_routed_as_before(clock: ManualClock) -> None:
    pool = EndpointPool()
    pool.add(REPLICA, ready=True)
    p = pipeline(pool, clock)
    ticket = p.open(req("1"))
    assert ticket.trace is None
    route = p.decide(ticket)
    p.started(ticket, route.pick)  # type: ignore[union-attr]
    assert ticket.trace is None
