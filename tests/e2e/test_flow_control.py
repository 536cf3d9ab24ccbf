"""Flow control on loopback: queue while saturated, dispatch by priority, shed with 429."""

from __future__ import annotations

import asyncio

import httpx
import orjson
import pytest

from pilothouse.config.fleet import FlowControlSpec, GatewaySpec, SaturationSpec
from tests.e2e.gateway_harness import running_gateway

pytestmark = pytest.mark.e2e


def _spec(**flow: object) -> GatewaySpec:
    control = FlowControlSpec.model_validate(
        {
            "enabled": True,
            "max_queue": 2,
            "queue_timeout_s": 10.0,
            "retry_after_s": 3.0,
            "saturation": SaturationSpec(max_in_flight_per_replica=1),
            **flow,
        }
    )
    return GatewaySpec(
        port=0,
        probe_interval_s=0.1,
        read_timeout_s=10,
        flow_control=control,
        trust_priority_header=True,  # the tests set numeric priorities
    )


async def _chat(
    client: httpx.AsyncClient, url: str, tag: str, priority: int, tenant: str = "t"
) -> httpx.Response:
    body = {"model": "m", "messages": [{"role": "user", "content": tag}]}
    return await client.post(
        url + "/v1/chat/completions",
        content=orjson.dumps(body),
        headers={
            "content-type": "application/json",
            "x-pilothouse-priority": str(priority),
            "x-pilothouse-tenant": tenant,
        },
    )


def _tags(bodies: list[bytes]) -> list[str]:
    return [orjson.loads(b)["messages"][0]["content"] for b in bodies]


async def test_queued_requests_run_when_capacity_frees_and_low_priority_is_shed_first() -> None:
    async with running_gateway(["r0"], _spec()) as gw, httpx.AsyncClient(timeout=20) as client:
        engine = gw.engines["r0"]
        engine.hang_s = 0.6

        def send(tag: str, priority: int) -> asyncio.Task[httpx.Response]:
            return asyncio.create_task(_chat(client, gw.url, tag, priority))

        busy = send("busy", 0)  # takes the only slot
        while engine.requests < 1:  # noqa: ASYNC110 - the fake engine exposes only a counter
            await asyncio.sleep(0.01)
        low, high = send("low", 0), send("high", 5)  # both wait: the queue is now full
        await asyncio.sleep(0.2)
        urgent = send("urgent", 5)  # displaces "low", the lowest priority queued
        shed = await asyncio.wait_for(low, 5)
        assert shed.status_code == 429
        assert shed.headers["retry-after"] == "3"
        assert shed.json()["error"]["type"] == "rate_limit_exceeded"
        lowest = await _chat(client, gw.url, "lowest", -1)  # lower than anything queued
        assert lowest.status_code == 429
        done = await asyncio.gather(busy, high, urgent)
        assert [r.status_code for r in done] == [200, 200, 200]
        assert _tags(engine.seen_bodies) == ["busy", "high", "urgent"]  # never two at once


async def test_a_request_that_waits_past_the_timeout_gets_429() -> None:
    spec = _spec(queue_timeout_s=0.3)
    async with running_gateway(["r0"], spec) as gw, httpx.AsyncClient(timeout=20) as client:
        engine = gw.engines["r0"]
        engine.hang_s = 1.0
        busy = asyncio.create_task(_chat(client, gw.url, "busy", 0))
        while engine.requests < 1:  # noqa: ASYNC110 - the fake engine exposes only a counter
            await asyncio.sleep(0.01)
        waited = await _chat(client, gw.url, "late", 9)
        assert waited.status_code == 429
        assert "queue timeout" in waited.json()["error"]["message"]
        assert waited.headers["retry-after"] == "3"
        assert (await busy).status_code == 200
        assert _tags(engine.seen_bodies) == ["busy"]


async def test_without_flow_control_nothing_waits() -> None:
    spec = _spec(enabled=False)
    async with running_gateway(["r0"], spec) as gw, httpx.AsyncClient(timeout=20) as client:
        engine = gw.engines["r0"]
        engine.hang_s = 1.0
        tasks = [asyncio.create_task(_chat(client, gw.url, f"r{i}", 0)) for i in range(3)]
        async with asyncio.timeout(0.8):  # all three reach the engine while the first hangs
            while engine.requests < 3:  # noqa: ASYNC110 - the fake engine exposes only a counter
                await asyncio.sleep(0.01)
        replies = await asyncio.gather(*tasks)
        assert [r.status_code for r in replies] == [200, 200, 200]
