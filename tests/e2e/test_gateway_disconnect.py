"""A client that leaves is noticed on the one request path (issue #10).

Through a real gateway on loopback: a streamed or non-streamed request whose client hangs
up frees its simulator slot (the gateway closes the upstream connection, the engine
aborts the request), and a request queued by flow control whose client left never reaches
an engine. In-flight gauges return to zero.

"Within 1 s" is measured and printed (``pytest -s``), not asserted: the wait is bounded
generously (:data:`BOUND_S`), still far below the minutes the request would run if it were
not aborted, which is what tells "stopped" from "finished".
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable

import aiohttp
import httpx
import orjson
import pytest

from pilothouse.config.fleet import (
    FleetSpec,
    FlowControlSpec,
    GatewaySpec,
    ModelSpec,
    SaturationSpec,
)
from pilothouse.servers.sim import SimSettings
from tests.e2e.gateway_harness import running_gateway
from tests.e2e.sim_gateway import SimGateway, sim_gateway

pytestmark = pytest.mark.e2e

BOUND_S = 15.0
MAX_TOKENS = 2500  # minutes of decoding at the time scale below


def _fleet() -> FleetSpec:
    return FleetSpec(
        models=[ModelSpec(name="sim-model", engine="sim", endpoints=["127.0.0.1:1"])],
        gateway=GatewaySpec(port=0, probe_interval_s=0.1),
    )


async def _until(probe: Callable[[], Awaitable[bool]], what: str) -> float:
    started = time.monotonic()
    while not await probe():
        if time.monotonic() - started > BOUND_S:
            raise AssertionError(f"{what}: not within {BOUND_S} s")
        await asyncio.sleep(0.01)
    return time.monotonic() - started


def _running(gw: SimGateway) -> int:
    (server,) = gw.replicas.values()
    return int(server.state.runtime.model.num_running + server.state.runtime.model.num_waiting)


def _gateway_in_flight(gw: SimGateway) -> float:
    registry = gw.app.ctx.metrics.registry
    return sum(
        sample.value
        for family in registry.collect()
        if family.name == "pilothouse_endpoint_in_flight_requests"
        for sample in family.samples
    )


@pytest.mark.parametrize("stream", [True, False], ids=["streamed", "non-streamed"])
async def test_a_client_that_leaves_frees_its_engine_slot(stream: bool) -> None:
    settings = SimSettings(port=0, model="sim-model", time_scale=0.1)
    async with sim_gateway(_fleet(), [("r0", settings)]) as gw:
        body = {"model": "sim-model", "prompt": "tell me everything", "stream": stream}
        session = aiohttp.ClientSession()
        request = asyncio.create_task(
            session.post(gw.url + "/v1/completions", json={**body, "max_tokens": MAX_TOKENS})
        )
        reply: aiohttp.ClientResponse | None = None
        try:

            async def generating() -> bool:
                return _running(gw) == 1 and _gateway_in_flight(gw) == 1

            await _until(generating, "the request generating")
            if stream:
                reply = await request
                await reply.content.readany()  # the first chunk is out
        finally:
            request.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await request
            if reply is not None:
                reply.close()  # the client hangs up (an unclosed reply warns when collected)
            await session.close()  # the client hangs up
        left = time.monotonic()

        async def freed() -> bool:
            return _running(gw) == 0 and _gateway_in_flight(gw) == 0

        await _until(freed, "the engine slot after the client left")
        print(f"slot freed {time.monotonic() - left:.3f} s after the client left")
    counts = gw.app.ctx.metrics.registry.get_sample_value(
        "pilothouse_requests_total",
        {"model": "sim-model", "route": "/v1/completions", "status": "499"},
    )
    assert counts == 1


def _flow_spec() -> GatewaySpec:
    control = FlowControlSpec(
        enabled=True,
        max_queue=4,
        queue_timeout_s=30.0,
        saturation=SaturationSpec(max_in_flight_per_replica=1),
    )
    return GatewaySpec(port=0, probe_interval_s=0.1, read_timeout_s=10, flow_control=control)


async def test_a_queued_request_whose_client_left_never_reaches_an_engine() -> None:
    async with running_gateway(["r0"], _flow_spec()) as gw:
        engine = gw.engines["r0"]
        engine.hang_s = 1.0
        body = {"model": "m", "messages": [{"role": "user", "content": "x"}]}

        async def chat(client: httpx.AsyncClient, tag: str) -> httpx.Response:
            doc = {**body, "messages": [{"role": "user", "content": tag}]}
            return await client.post(gw.url + "/v1/chat/completions", content=orjson.dumps(doc))

        async with httpx.AsyncClient(timeout=20) as keeper:
            busy = asyncio.create_task(chat(keeper, "busy"))
            while engine.requests < 1:  # noqa: ASYNC110 - the fake engine exposes a counter
                await asyncio.sleep(0.01)
            leaver = httpx.AsyncClient(timeout=20)
            queued = asyncio.create_task(chat(leaver, "left"))
            assert gw.app is not None
            pipeline = gw.app.ctx.pipeline
            while pipeline.queued("m") < 1:  # noqa: ASYNC110 - the queue exposes a count
                await asyncio.sleep(0.01)
            queued.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await queued
            await leaver.aclose()
            while pipeline.queued("m") > 0:  # noqa: ASYNC110
                await asyncio.sleep(0.01)
            assert (await busy).status_code == 200
            after = await chat(keeper, "after")
            assert after.status_code == 200
        tags = [orjson.loads(b)["messages"][0]["content"] for b in engine.seen_bodies]
        assert tags == ["busy", "after"]  # "left" never reached the engine
        assert all(e.in_flight == 0 for e in gw.app.ctx.pool.endpoints())
        assert gw.app.ctx.pipeline.queued("m") == 0
