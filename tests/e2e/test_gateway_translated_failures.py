"""``/v1/messages`` and ``/v1/responses`` when things go wrong: the engine refuses, its stream
breaks, the key is wrong. Fake engines behind a real gateway; every failure reaches the
client in its own API's shape."""

from __future__ import annotations

import json

import httpx
import orjson
import pytest

from pilothouse.config.fleet import GatewaySpec
from tests.e2e.gateway_harness import running_gateway

pytestmark = pytest.mark.e2e

MESSAGE = {"model": "m", "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]}
RESPONSE = {"model": "m", "input": "hi"}


def _events(text: str) -> list[tuple[str, dict[str, object]]]:
    lines = text.splitlines()
    names = [line[7:] for line in lines if line.startswith("event: ")]
    datas = [json.loads(line[6:]) for line in lines if line.startswith("data: ")]
    assert len(names) == len(datas)
    return list(zip(names, datas, strict=True))


async def test_messages_reach_the_engine_as_a_chat_request_asking_for_usage() -> None:
    async with running_gateway(["e0"]) as gw, httpx.AsyncClient(timeout=10) as http:
        reply = await http.post(gw.url + "/v1/messages", json={**MESSAGE, "stream": True})
        assert reply.status_code == 200
        sent = orjson.loads(gw.engines["e0"].seen_bodies[-1])
    assert sent["messages"] == [{"role": "user", "content": "hi"}]
    assert sent["stream_options"] == {"include_usage": True}
    final = _events(reply.text)[-2][1]
    assert final["usage"] == {"input_tokens": 7, "output_tokens": 4}


async def test_messages_engine_refusal_is_an_anthropic_error() -> None:
    async with running_gateway(["e0"]) as gw, httpx.AsyncClient(timeout=10) as http:
        gw.engines["e0"].status = 400
        reply = await http.post(gw.url + "/v1/messages", json=MESSAGE)
    assert reply.status_code == 400
    body = reply.json()
    assert body["type"] == "error"
    assert body["error"]["type"] == "invalid_request_error"
    assert "fake failure" in body["error"]["message"]


async def test_messages_broken_stream_ends_with_an_error_event() -> None:
    async with running_gateway(["e0"]) as gw, httpx.AsyncClient(timeout=10) as http:
        gw.engines["e0"].break_after_chunks = 2
        reply = await http.post(gw.url + "/v1/messages", json={**MESSAGE, "stream": True})
    events = _events(reply.text)
    assert events[0][0] == "message_start"
    assert "message_stop" not in [name for name, _ in events]
    name, data = events[-1]
    assert name == "error"
    assert data["error"]["type"] == "api_error"  # type: ignore[index]


async def test_responses_broken_stream_ends_failed() -> None:
    async with running_gateway(["e0"]) as gw, httpx.AsyncClient(timeout=10) as http:
        gw.engines["e0"].break_after_chunks = 2
        reply = await http.post(gw.url + "/v1/responses", json={**RESPONSE, "stream": True})
    names = [name for name, _ in _events(reply.text)]
    assert names[-2:] == ["error", "response.failed"]
    assert "response.completed" not in names


async def test_responses_engine_refusal_is_an_openai_error() -> None:
    async with running_gateway(["e0"]) as gw, httpx.AsyncClient(timeout=10) as http:
        gw.engines["e0"].status = 422
        reply = await http.post(gw.url + "/v1/responses", json=RESPONSE)
    assert reply.status_code == 422
    assert "fake failure" in reply.json()["error"]["message"]


async def test_messages_take_the_key_as_x_api_key_and_responses_as_a_bearer() -> None:
    spec = GatewaySpec(port=0, probe_interval_s=0.1, read_timeout_s=2, api_key="sekret")
    async with running_gateway(["e0"], settings=spec) as gw, httpx.AsyncClient(timeout=10) as http:
        good = await http.post(gw.url + "/v1/messages", json=MESSAGE,
                               headers={"x-api-key": "sekret"})  # fmt: skip
        wrong = await http.post(gw.url + "/v1/messages", json=MESSAGE,
                                headers={"x-api-key": "nope"})  # fmt: skip
        bearer = await http.post(gw.url + "/v1/responses", json=RESPONSE,
                                 headers={"authorization": "Bearer sekret"})  # fmt: skip
        not_here = await http.post(gw.url + "/v1/responses", json=RESPONSE,
                                   headers={"x-api-key": "sekret"})  # fmt: skip
    assert good.status_code == 200
    assert wrong.status_code == 401
    assert wrong.json()["error"]["type"] == "authentication_error"
    assert bearer.status_code == 200
    assert not_here.status_code == 401  # x-api-key is Anthropic's header only
