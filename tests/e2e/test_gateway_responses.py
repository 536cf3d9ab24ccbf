"""``/v1/responses`` end to end: the official ``openai`` client, the gateway, the simulator.

The simulator speaks chat completions only: every answer here went through the gateway's
translation, on the chat request path (routing, metrics, the access log).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from pilothouse.config.fleet import FleetSpec, parse_fleet
from pilothouse.servers.sim import SimSettings
from tests.e2e.scripted_sim import WEATHER_SCRIPT, scripted_gateway
from tests.e2e.sim_gateway import SimGateway, sim_gateway

openai = pytest.importorskip("openai")

pytestmark = pytest.mark.e2e

MODEL = "sim-model"
REPLICAS = [("r0", SimSettings(port=0, model=MODEL, time_scale=50.0))]
WEATHER_TOOL = {
    "type": "function",
    "name": "get_weather",
    "description": "The current weather in a city",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}


def _fleet() -> FleetSpec:
    return parse_fleet(
        {
            "models": [{"name": MODEL, "engine": "sim", "endpoints": ["127.0.0.1:1"]}],
            "gateway": {"port": 0, "probe_interval_s": 30},
        }
    )


@pytest.fixture
async def gateway() -> AsyncIterator[SimGateway]:
    async with sim_gateway(_fleet(), REPLICAS) as gw:
        yield gw


def _client(url: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)


@pytest.fixture
async def client(gateway: SimGateway) -> AsyncIterator[openai.AsyncOpenAI]:
    async with _client(gateway.url) as client:
        yield client


async def test_responses_create_answers_with_output_text_and_usage(
    client: openai.AsyncOpenAI,
) -> None:
    response = await client.responses.create(
        model=MODEL, instructions="Answer briefly.", input="Say something."
    )
    assert response.object == "response"
    assert response.status == "completed"
    assert response.model == MODEL
    assert response.output_text.strip()
    assert response.output[0].type == "message"
    assert response.usage is not None
    assert response.usage.input_tokens > 0
    assert response.usage.output_tokens > 0
    assert response.usage.total_tokens == response.usage.input_tokens + response.usage.output_tokens


async def test_responses_stopped_at_max_output_tokens_is_incomplete(
    client: openai.AsyncOpenAI,
) -> None:
    response = await client.responses.create(
        model=MODEL, input="Say something.", max_output_tokens=4
    )
    assert response.status == "incomplete"
    assert response.incomplete_details is not None
    assert response.incomplete_details.reason == "max_output_tokens"
    assert response.usage is not None
    assert response.usage.output_tokens == 4


async def test_responses_streamed_events_add_up_to_the_final_response(
    client: openai.AsyncOpenAI,
) -> None:
    stream = await client.responses.create(model=MODEL, input="Say something.", stream=True)
    kinds: list[str] = []
    deltas: list[str] = []
    final = None
    async for event in stream:
        kinds.append(event.type)
        if event.type == "response.output_text.delta":
            deltas.append(event.delta)
        if event.type == "response.completed":
            final = event.response
    assert kinds[:2] == ["response.created", "response.in_progress"]
    assert kinds[-1] == "response.completed"
    assert len(deltas) > 1
    assert final is not None
    assert final.output_text == "".join(deltas)
    assert final.usage is not None
    assert final.usage.output_tokens > 0


async def test_responses_stream_helper_gets_the_final_response(client: openai.AsyncOpenAI) -> None:
    async with client.responses.stream(model=MODEL, input="Hello") as stream:
        text = "".join([e.delta async for e in stream if e.type == "response.output_text.delta"])
        final = await stream.get_final_response()
    assert final.output_text == text
    assert text


async def test_responses_unservable_request_is_a_400_naming_the_field(
    client: openai.AsyncOpenAI,
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        await client.responses.create(model=MODEL, input="x", previous_response_id="resp_1")
    assert "previous_response_id" in caught.value.message
    with pytest.raises(openai.NotFoundError):
        await client.responses.create(model="no-such-model", input="x")


async def test_responses_are_counted_under_their_own_route(
    gateway: SimGateway, client: openai.AsyncOpenAI
) -> None:
    await client.responses.create(model=MODEL, input="x")
    labels = {"model": MODEL, "route": "/v1/responses", "status": "200"}
    registry = gateway.app.ctx.metrics.registry
    assert registry.get_sample_value("pilothouse_requests_total", labels) == 1


async def test_responses_function_call_round_trip_on_a_scripted_model(tmp_path: Path) -> None:
    async with (
        scripted_gateway(_fleet(), MODEL, tmp_path, WEATHER_SCRIPT) as url,
        _client(url) as client,
    ):
        first = await client.responses.create(
            model=MODEL, input="What is the weather in Paris?", tools=[WEATHER_TOOL]
        )
        [call] = [item for item in first.output if item.type == "function_call"]
        assert call.name == "get_weather"
        assert call.arguments.replace(" ", "") == '{"city":"Paris"}'
        stream = await client.responses.create(
            model=MODEL,
            input=[
                {"role": "user", "content": "What is the weather in Paris?"},
                {
                    "type": "function_call",
                    "call_id": call.call_id,
                    "name": call.name,
                    "arguments": call.arguments,
                },
                {"type": "function_call_output", "call_id": call.call_id, "output": "sunny"},
            ],
            tools=[WEATHER_TOOL],
            stream=True,
        )
        final = [e.response async for e in stream if e.type == "response.completed"]
    assert final[0].output_text == "It is sunny in Paris."


async def test_responses_streamed_function_call_on_a_scripted_model(tmp_path: Path) -> None:
    async with (
        scripted_gateway(_fleet(), MODEL, tmp_path, WEATHER_SCRIPT) as url,
        _client(url) as client,
    ):
        stream = await client.responses.create(
            model=MODEL, input="weather in Paris?", tools=[WEATHER_TOOL], stream=True
        )
        events = [event async for event in stream]
    done = [e for e in events if e.type == "response.function_call_arguments.done"]
    assert len(done) == 1
    assert done[0].arguments.replace(" ", "") == '{"city":"Paris"}'
    final = events[-1]
    assert final.type == "response.completed"
    assert [item.type for item in final.response.output] == ["function_call"]
