"""The simulator answering from a script, seen through the official ``openai`` client."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from openai import AsyncOpenAI

from pilothouse.config.fleet import parse_fleet
from pilothouse.engines.tokenizer import DummyTokenizer
from pilothouse.servers.sim import SimServer, SimSettings
from pilothouse.servers.sim.script import Script, load_script
from tests.e2e.sim_gateway import sim_gateway

pytestmark = pytest.mark.e2e

EXAMPLE = Path(__file__).parents[2] / "examples" / "agents" / "scripts" / "weather.yaml"
TOOLS: list[Any] = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "The current weather of a city.",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        },
    }
]
ASK: list[Any] = [{"role": "user", "content": "What is the weather in Paris?"}]
TOKENS = DummyTokenizer()


@pytest.fixture
async def client() -> AsyncIterator[AsyncOpenAI]:
    settings = SimSettings(port=0, time_scale=50.0, script=load_script(EXAMPLE))
    async with SimServer(settings) as server:
        openai = AsyncOpenAI(base_url=f"{server.base_url}/v1", api_key="unused", max_retries=0)
        async with openai:
            yield openai


async def test_script_tool_call_then_answer(client: AsyncOpenAI) -> None:
    first = await client.chat.completions.create(model="sim-model", messages=ASK, tools=TOOLS)
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    calls = choice.message.tool_calls
    assert calls is not None
    assert len(calls) == 1
    call = calls[0]
    assert call.type == "function"
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Paris"}
    assert first.usage is not None
    expected = len(TOKENS.encode("get_weather")) + len(TOKENS.encode(call.function.arguments))
    assert first.usage.completion_tokens == expected
    again = await client.chat.completions.create(model="sim-model", messages=ASK, tools=TOOLS)
    assert again.choices[0].message.tool_calls == calls  # same conversation, same call ids

    followed = [
        *ASK,
        choice.message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": "Sunny, 24 degrees"},
    ]
    second = await client.chat.completions.create(model="sim-model", messages=followed, tools=TOOLS)
    assert second.choices[0].finish_reason == "stop"
    assert second.choices[0].message.content == "It is sunny in Paris today."
    assert second.choices[0].message.tool_calls is None
    assert second.usage is not None
    assert second.usage.completion_tokens == len(TOKENS.encode("It is sunny in Paris today."))


async def test_script_streamed_tool_call_matches_the_non_streamed_one(client: AsyncOpenAI) -> None:
    whole = await client.chat.completions.create(model="sim-model", messages=ASK, tools=TOOLS)
    stream = await client.chat.completions.create(
        model="sim-model",
        messages=ASK,
        tools=TOOLS,
        stream=True,
        stream_options={"include_usage": True},
    )
    calls: dict[int, dict[str, Any]] = {}
    reasons, usage = [], None
    async for chunk in stream:
        usage = chunk.usage or usage
        for choice in chunk.choices:
            reasons.append(choice.finish_reason)
            for delta in choice.delta.tool_calls or ():
                if delta.id is not None:  # a call opens: id, type and name come first
                    assert delta.type == "function"
                    assert delta.function is not None
                    assert delta.index not in calls
                    calls[delta.index] = {"id": delta.id, "name": delta.function.name, "args": ""}
                assert delta.function is not None
                calls[delta.index]["args"] += delta.function.arguments or ""
    expected = whole.choices[0].message.tool_calls
    assert expected is not None
    assert [(c["id"], c["name"], c["args"]) for c in calls.values()] == [
        (e.id, e.function.name, e.function.arguments) for e in expected
    ]
    assert reasons[-1] == "tool_calls"
    assert usage is not None
    assert whole.usage is not None
    assert usage.completion_tokens == whole.usage.completion_tokens


async def test_script_unmatched_conversation_and_max_tokens(client: AsyncOpenAI) -> None:
    other = await client.chat.completions.create(
        model="sim-model", messages=[{"role": "user", "content": "Tell me a joke"}]
    )
    assert other.choices[0].message.content == "I can only tell you about the weather."
    cut = await client.chat.completions.create(
        model="sim-model", messages=ASK, tools=TOOLS, max_tokens=2
    )
    assert cut.choices[0].finish_reason == "length"
    assert cut.usage is not None
    assert cut.usage.completion_tokens == 2
    calls = cut.choices[0].message.tool_calls
    assert calls is not None
    assert calls[0].function.name == "get_weather"
    assert calls[0].function.arguments == ""  # the arguments were not reached


async def test_script_unmatched_requests_get_filler_text() -> None:
    first_only = load_script(EXAMPLE).replies[:1]  # the weather tool call only
    settings = SimSettings(port=0, time_scale=50.0, script=Script(replies=first_only))
    async with (
        SimServer(settings) as server,
        AsyncOpenAI(base_url=f"{server.base_url}/v1", api_key="x") as openai,
    ):
        reply = await openai.chat.completions.create(
            model="sim-model", messages=[{"role": "user", "content": "hi"}], max_tokens=5
        )
    assert reply.choices[0].finish_reason == "length"
    assert reply.choices[0].message.tool_calls is None
    assert len((reply.choices[0].message.content or "").split()) == 5


def test_script_bad_file_stops_the_command_with_the_field_path(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("replies:\n  - when: {contains: '('}\n    content: x\n")
    done = subprocess.run(
        [sys.executable, "-m", "pilothouse", "engine", "sim", "--port", "0", "--script", str(bad)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "replies[0].when.contains" in done.stderr
    assert "Traceback" not in done.stderr


async def test_script_tool_loop_through_the_gateway() -> None:
    """The gateway lets tool calls and tool results through, both ways, streamed or not."""
    fleet = parse_fleet(
        {
            "models": [{"name": "sim-model", "engine": "sim", "endpoints": ["127.0.0.1:1"]}],
            "gateway": {"port": 0, "probe_interval_s": 0.05, "access_log": False},
        }
    )
    settings = SimSettings(port=0, time_scale=50.0, script=load_script(EXAMPLE))
    async with (
        sim_gateway(fleet, [("sim-0", settings)]) as gateway,
        AsyncOpenAI(base_url=f"{gateway.url}/v1", api_key="x", max_retries=0) as client,
    ):
        first = await client.chat.completions.create(model="sim-model", messages=ASK, tools=TOOLS)
        calls = first.choices[0].message.tool_calls
        assert calls is not None
        followed = [
            *ASK,
            first.choices[0].message.model_dump(exclude_none=True),
            {"role": "tool", "tool_call_id": calls[0].id, "content": "Sunny"},
        ]
        stream = await client.chat.completions.create(
            model="sim-model", messages=followed, tools=TOOLS, stream=True
        )
        text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert calls[0].function.name == "get_weather"
    assert text == "It is sunny in Paris today."
