"""The gateway's retries, failover and mid-stream failures, on a FakeTransport (no process).

Each test drives the real :class:`ProxyEndpoint` with ASGI callables over a pool of two
replicas whose engines are scripted per address.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest

from pilothouse.clock import ManualClock
from pilothouse.config.fleet import GatewaySpec
from pilothouse.endpoints.pool import EndpointPool
from pilothouse.gateway.context import GatewayContext
from pilothouse.gateway.metrics import GatewayMetrics
from pilothouse.gateway.proxy import ProxyEndpoint
from pilothouse.openai.requests import Route
from pilothouse.scheduling.config import builtin_config
from pilothouse.scheduling.scheduler import build_scheduler
from pilothouse.scheduling.types import Endpoint
from pilothouse.testing import Answer, Fail, FakeTransport, Hang

CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
A, B = "10.0.0.1:8000", "10.0.0.2:8000"
SSE = (("content-type", "text/event-stream"),)


def _proxy(fake: FakeTransport) -> tuple[ProxyEndpoint, GatewayContext]:
    pool = EndpointPool()
    for name, address in (("a", A), ("b", B)):
        pool.add(Endpoint(name=name, address=address, model="m"), ready=True)
    clock = ManualClock()
    ctx = GatewayContext(
        settings=GatewaySpec(access_log=False),
        pool=pool,
        scheduler=build_scheduler(builtin_config("round-robin"), clock),
        metrics=GatewayMetrics(),
        clock=clock,
        transport=fake,
    )
    return ProxyEndpoint(Route.CHAT, ctx), ctx


async def _call(proxy: ProxyEndpoint, body: dict[str, Any]) -> tuple[int, bytes]:
    raw = orjson.dumps(body)
    scope = {"type": "http", "method": "POST", "path": "/v1/chat/completions", "headers": []}
    sent: list[dict[str, Any]] = []
    incoming = asyncio.Queue[dict[str, Any]]()
    incoming.put_nowait({"type": "http.request", "body": raw, "more_body": False})

    async def receive() -> dict[str, Any]:
        return await incoming.get()  # after the body: nothing until the test ends

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await proxy(scope, receive, send)
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return status, body


def _in_flight(ctx: GatewayContext) -> list[int]:
    return [e.in_flight for e in ctx.pool.endpoints()]


async def test_a_failure_before_the_first_byte_is_retried_on_the_other_replica() -> None:
    fake = FakeTransport().add(A, Fail()).always(B, Answer.json({"ok": True}))
    proxy, ctx = _proxy(fake)
    status, body = await _call(proxy, CHAT)
    assert (status, orjson.loads(body)) == (200, {"ok": True})
    assert [s.address for s in fake.sent] == [A, B]
    assert not ctx.pool.get("a").ready  # passive health: the monitor re-checks it
    assert _in_flight(ctx) == [0, 0]


@pytest.mark.parametrize(
    ("first", "second", "status"),
    [
        pytest.param(Fail(), Fail(), 502, id="both-refuse"),
        pytest.param(Fail(timeout=True), Fail(timeout=True), 504, id="both-time-out"),
        pytest.param(Answer.json({"e": 1}, status=503), Answer.json({"e": 2}, 500), 502, id="5xx"),
    ],
)
async def test_when_every_attempt_fails_the_last_error_is_answered(
    first: Any, second: Any, status: int
) -> None:
    fake = FakeTransport().add(A, first).add(B, second)
    proxy, ctx = _proxy(fake)
    got, body = await _call(proxy, CHAT)
    assert got == status
    assert "error" in orjson.loads(body)
    assert len(fake.sent) == 2
    assert _in_flight(ctx) == [0, 0]


async def test_a_4xx_is_relayed_not_retried() -> None:
    fake = FakeTransport().always(A, Answer.json({"error": "bad"}, status=400))
    fake.always(B, Answer.json({"error": "bad"}, status=400))
    proxy, _ = _proxy(fake)
    status, _ = await _call(proxy, CHAT)
    assert status == 400
    assert len(fake.sent) == 1


async def test_a_stream_that_breaks_midway_ends_with_an_sse_error_event() -> None:
    events = [b'data: {"choices":[]}\n\n'] * 3
    fake = FakeTransport()
    for address in (A, B):
        fake.always(address, Answer.sse(events, break_after=2))
    proxy, ctx = _proxy(fake)
    status, body = await _call(proxy, {**CHAT, "stream": True})
    assert status == 200
    assert body.startswith(events[0] * 2)
    assert b"the engine stream broke" in body
    assert len(fake.sent) == 1  # no retry once bytes went out
    assert _in_flight(ctx) == [0, 0]
    assert fake.responses[0].closed
    labels = {"model": "m", "route": "/v1/chat/completions", "status": "502"}
    counted = ctx.metrics.registry.get_sample_value("pilothouse_requests_total", labels)
    assert counted == 1  # a broken stream is counted as the upstream failure it is


async def test_a_stream_that_stalls_past_the_read_timeout_ends_with_an_sse_error_event() -> None:
    """A hung engine mid-stream: the transport's read timeout ends the stream properly."""
    events = [b'data: {"choices":[]}\n\n'] * 3
    fake = FakeTransport()
    for address in (A, B):
        fake.always(address, Answer(chunks=tuple(events), headers=SSE, timeout_after=1))
    proxy, ctx = _proxy(fake)
    status, body = await _call(proxy, {**CHAT, "stream": True})
    assert status == 200
    assert body.startswith(events[0])
    assert body.rstrip().endswith(b"data: [DONE]")
    assert b"error" in body
    assert _in_flight(ctx) == [0, 0]


async def test_a_request_cut_by_the_server_is_counted_before_it_goes() -> None:
    """The end of a shutdown drain cancels what is still running: it is counted (503) and
    its in-flight count given back, and the cancellation still propagates."""
    fake = FakeTransport().always(A, Hang()).always(B, Hang())
    proxy, ctx = _proxy(fake)
    task = asyncio.create_task(_call(proxy, CHAT))
    while not fake.sent:  # noqa: ASYNC110 - the fake records what was sent
        await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    labels = {"model": "m", "route": "/v1/chat/completions", "status": "503"}
    assert ctx.metrics.registry.get_sample_value("pilothouse_requests_total", labels) == 1
    assert _in_flight(ctx) == [0, 0]
