"""The gateway on loopback against scriptable fake engines: auth, retries, faults, metrics."""

from __future__ import annotations

import httpx
import orjson
import pytest

from pilothouse.config.fleet import GatewaySpec
from tests.e2e.gateway_harness import running_gateway

pytestmark = pytest.mark.e2e
CHAT = {"model": "m", "messages": [{"role": "user", "content": "hello"}]}


async def _post(
    client: httpx.AsyncClient, url: str, body: object, **headers: str
) -> httpx.Response:
    return await client.post(
        url + "/v1/chat/completions",
        content=orjson.dumps(body),
        headers={"content-type": "application/json", **headers},
    )


async def test_non_streamed_reply_is_relayed_with_headers() -> None:
    async with running_gateway(["r0"]) as gw, httpx.AsyncClient(timeout=10) as client:
        response = await _post(client, gw.url, CHAT, **{"x-request-id": "abc"})
        assert response.status_code == 200
        assert response.json()["choices"][0]["message"]["content"] == "fake reply"
        assert response.headers["x-request-id"] == "abc"
        assert response.headers["x-pilothouse-endpoint"] == "r0"
        assert gw.engines["r0"].seen_bodies[-1] == orjson.dumps(CHAT)  # forwarded untouched


async def test_stream_is_relayed_and_usage_requested() -> None:
    async with running_gateway(["r0"]) as gw, httpx.AsyncClient(timeout=10) as client:
        response = await _post(client, gw.url, {**CHAT, "stream": True})
        events = [e for e in response.text.split("\n\n") if e]
        assert events[-1] == "data: [DONE]"
        assert orjson.loads(events[-2][6:])["usage"]["completion_tokens"] == 4
        assert orjson.loads(gw.engines["r0"].seen_bodies[-1])["stream_options"] == {
            "include_usage": True
        }
        metrics = (await client.get(gw.url + "/metrics")).text
        assert 'pilothouse_tokens_total{kind="completion",model="m"} 4.0' in metrics
        assert "pilothouse_time_to_first_token_seconds_count" in metrics


async def test_failure_before_first_byte_is_retried_on_another_replica() -> None:
    async with running_gateway(["r0", "r1"]) as gw, httpx.AsyncClient(timeout=10) as client:
        gw.engines["r0"].status = 500
        for _ in range(4):
            response = await _post(client, gw.url, CHAT)
            assert response.status_code == 200
            assert response.headers["x-pilothouse-endpoint"] == "r1"
        metrics = (await client.get(gw.url + "/metrics")).text
        assert 'pilothouse_upstream_retries_total{model="m"}' in metrics


async def test_engine_failure_everywhere_is_a_502() -> None:
    async with running_gateway(["r0", "r1"]) as gw, httpx.AsyncClient(timeout=10) as client:
        for engine in gw.engines.values():
            engine.status = 500
        response = await _post(client, gw.url, CHAT)
        assert response.status_code == 502
        assert response.json()["error"]["type"] == "upstream_error"
        assert sum(e.requests for e in gw.engines.values()) == 2  # one try, one retry


async def test_engine_timeout_is_a_504() -> None:
    spec = GatewaySpec(port=0, read_timeout_s=0.3, probe_interval_s=0.1)
    async with running_gateway(["r0"], spec) as gw, httpx.AsyncClient(timeout=10) as client:
        gw.engines["r0"].hang_s = 1.0
        response = await _post(client, gw.url, CHAT)
        assert response.status_code == 504
        assert "did not answer in time" in response.json()["error"]["message"]


async def test_engine_dying_mid_stream_ends_with_an_error_event() -> None:
    async with running_gateway(["r0"]) as gw, httpx.AsyncClient(timeout=10) as client:
        gw.engines["r0"].break_after_chunks = 2
        response = await _post(client, gw.url, {**CHAT, "stream": True})
        assert response.status_code == 200
        events = [e for e in response.text.split("\n\n") if e]
        assert events[:2] == [e for e in events[:2] if '"t' in e]  # two real chunks first
        assert orjson.loads(events[-2][6:])["error"]["type"] == "upstream_error"
        assert events[-1] == "data: [DONE]"


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({}, 401),
        ({"authorization": "Bearer wrong"}, 401),
        ({"authorization": "Basic s3cret"}, 401),
        ({"authorization": "Bearer s3cret"}, 200),
    ],
    ids=["missing", "wrong", "wrong-scheme", "right"],
)
async def test_api_key_guards_v1_routes(headers: dict[str, str], status: int) -> None:
    spec = GatewaySpec(port=0, api_key="s3cret", probe_interval_s=0.1)
    async with running_gateway(["r0"], spec) as gw, httpx.AsyncClient(timeout=10) as client:
        chat = await _post(client, gw.url, CHAT, **headers)
        models = await client.get(gw.url + "/v1/models", headers=headers)
        assert chat.status_code == status
        assert models.status_code == status
        if status == 401:
            assert chat.json()["error"]["type"] == "authentication_error"
            assert models.json()["error"]["code"] == "invalid_api_key"
        for open_path in ("/metrics", "/health", "/ready"):
            assert (await client.get(gw.url + open_path)).status_code == 200


async def test_ready_reflects_replica_health() -> None:
    async with running_gateway(["r0"]) as gw, httpx.AsyncClient(timeout=10) as client:
        assert (await client.get(gw.url + "/ready")).status_code == 200
        assert (await client.get(gw.url + "/health")).json() == {"status": "ok"}


async def test_metrics_cover_the_request_path() -> None:
    async with running_gateway(["r0"]) as gw, httpx.AsyncClient(timeout=10) as client:
        await _post(client, gw.url, CHAT)
        await _post(client, gw.url, {"model": "nope", "messages": []})
        text = (await client.get(gw.url + "/metrics")).text
        for series in (
            'pilothouse_requests_total{model="m",route="/v1/chat/completions",status="200"} 1.0',
            'pilothouse_requests_total{model="",route="/v1/chat/completions",status="400"} 1.0',
            "pilothouse_e2e_request_latency_seconds_count",
            "pilothouse_scheduling_decision_seconds_count 1.0",
            'pilothouse_endpoint_in_flight_requests{endpoint="r0"} 0.0',
            "pilothouse_inter_token_latency_seconds",
        ):
            assert series in text
