"""``/v1/messages`` end to end: the official ``anthropic`` client, the gateway, the simulator.

The simulator speaks chat completions only: every answer here went through the gateway's
translation into Anthropic's Messages API, on the chat request path.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from pilothouse.config.fleet import FleetSpec, parse_fleet
from pilothouse.servers.sim import SimSettings
from tests.e2e.scripted_sim import WEATHER_SCRIPT, scripted_gateway
from tests.e2e.sim_gateway import SimGateway, sim_gateway

anthropic = pytest.importorskip("anthropic")

pytestmark = pytest.mark.e2e

MODEL = "sim-model"
REPLICAS = [("r0", SimSettings(port=0, model=MODEL, time_scale=50.0))]
WEATHER_TOOL = {
    "name": "get_weather",
    "description": "The current weather in a city",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}
QUESTION = {"role": "user", "content": "What is the weather in Paris?"}


def _fleet() -> FleetSpec:
    return parse_fleet(
        {
            "models": [{"name": MODEL, "engine": "sim", "endpoints": ["127.0.0.1:1"]}],
            "gateway": {"port": 0, "probe_interval_s": 30},
        }
    )


def _client(url: str) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(base_url=url, api_key="unused", max_retries=0)


@pytest.fixture
async def gateway() -> AsyncIterator[SimGateway]:
    async with sim_gateway(_fleet(), REPLICAS) as gw:
        yield gw


@pytest.fixture
async def client(gateway: SimGateway) -> AsyncIterator[anthropic.AsyncAnthropic]:
    async with _client(gateway.url) as client:
        yield client


async def test_messages_create_answers_a_message(client: anthropic.AsyncAnthropic) -> None:
    message = await client.messages.create(
        model=MODEL,
        max_tokens=6,
        system="Answer briefly.",
        messages=[{"role": "user", "content": "Say something."}],
    )
    assert message.type == "message"
    assert message.role == "assistant"
    assert message.model == MODEL
    assert message.content[0].type == "text"
    assert message.content[0].text.strip()
    assert message.stop_reason == "max_tokens"
    assert message.usage.output_tokens == 6
    assert message.usage.input_tokens > 0


async def test_messages_stream_builds_the_same_message(client: anthropic.AsyncAnthropic) -> None:
    async with client.messages.stream(
        model=MODEL, max_tokens=64, messages=[{"role": "user", "content": "Say something."}]
    ) as stream:
        kinds = [event.type async for event in stream]
        text = await stream.get_final_text()
        final = await stream.get_final_message()
    assert kinds[0] == "message_start"
    assert kinds[-1] == "message_stop"
    assert "content_block_delta" in kinds
    assert text.strip()
    assert final.stop_reason in ("end_turn", "max_tokens")
    assert final.usage.input_tokens > 0
    assert final.usage.output_tokens > 0


async def test_messages_raw_stream_names_every_event(gateway: SimGateway) -> None:
    body = {"model": MODEL, "max_tokens": 3, "stream": True, "messages": [QUESTION]}
    async with httpx.AsyncClient(timeout=30) as http:
        reply = await http.post(gateway.url + "/v1/messages", json=body)
    assert reply.status_code == 200
    assert reply.headers["content-type"].startswith("text/event-stream")
    names = [line[7:] for line in reply.text.splitlines() if line.startswith("event: ")]
    datas = [json.loads(line[6:]) for line in reply.text.splitlines() if line.startswith("data: ")]
    assert names == [d["type"] for d in datas]
    assert names[:3] == ["message_start", "ping", "content_block_start"]
    assert names[-2:] == ["message_delta", "message_stop"]


async def test_messages_errors_have_anthropics_shape(client: anthropic.AsyncAnthropic) -> None:
    with pytest.raises(anthropic.NotFoundError) as missing:
        await client.messages.create(model="no-such-model", max_tokens=5, messages=[QUESTION])
    assert missing.value.body["error"]["type"] == "not_found_error"
    with pytest.raises(anthropic.BadRequestError) as bad:
        await client.messages.create(
            model=MODEL,
            max_tokens=5,
            messages=[QUESTION],
            tools=[{"type": "web_search_20250305", "name": "web_search"}],
        )
    assert bad.value.body["type"] == "error"
    assert bad.value.body["error"]["type"] == "invalid_request_error"
    assert "tools.0.type" in bad.value.body["error"]["message"]


async def test_messages_stream_with_tool_use_on_a_scripted_model(tmp_path: Path) -> None:
    async with (
        scripted_gateway(_fleet(), MODEL, tmp_path, WEATHER_SCRIPT) as url,
        _client(url) as client,
    ):
        async with client.messages.stream(
            model=MODEL, max_tokens=256, messages=[QUESTION], tools=[WEATHER_TOOL]
        ) as stream:
            deltas = [e.delta.type async for e in stream if e.type == "content_block_delta"]
            first = await stream.get_final_message()
        assert "input_json_delta" in deltas
        assert first.stop_reason == "tool_use"
        [use] = [block for block in first.content if block.type == "tool_use"]
        assert use.name == "get_weather"
        assert use.input == {"city": "Paris"}
        second = await client.messages.create(
            model=MODEL,
            max_tokens=256,
            tools=[WEATHER_TOOL],
            messages=[
                QUESTION,
                {"role": "assistant", "content": [b.model_dump() for b in first.content]},
                {
                    "role": "user",
                    "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "sunny"}],
                },
            ],
        )
    assert second.stop_reason == "end_turn"
    assert second.content[0].text == "It is sunny in Paris."


async def test_messages_create_with_tool_use_on_a_scripted_model(tmp_path: Path) -> None:
    async with (
        scripted_gateway(_fleet(), MODEL, tmp_path, WEATHER_SCRIPT) as url,
        _client(url) as client,
    ):
        message = await client.messages.create(
            model=MODEL, max_tokens=256, messages=[QUESTION], tools=[WEATHER_TOOL]
        )
    assert message.stop_reason == "tool_use"
    [use] = message.content
    assert use.type == "tool_use"
    assert (use.name, use.input) == ("get_weather", {"city": "Paris"})


async def test_messages_take_the_key_as_x_api_key_and_a_refusal_says_so() -> None:
    fleet = parse_fleet(
        {
            "models": [{"name": MODEL, "engine": "sim", "endpoints": ["127.0.0.1:1"]}],
            "gateway": {"port": 0, "probe_interval_s": 30, "api_key": "s3cret"},
        }
    )
    async with sim_gateway(fleet, REPLICAS) as gw:
        async with _client(gw.url) as wrong:  # the anthropic client sends x-api-key
            with pytest.raises(anthropic.AuthenticationError) as refused:
                await wrong.messages.create(model=MODEL, max_tokens=5, messages=[QUESTION])
        message = refused.value.body["error"]["message"]
        assert "x-api-key" in message
        assert "s3cret" not in message
        right = anthropic.AsyncAnthropic(base_url=gw.url, api_key="s3cret", max_retries=0)
        async with right:
            answer = await right.messages.create(model=MODEL, max_tokens=5, messages=[QUESTION])
        assert answer.content
