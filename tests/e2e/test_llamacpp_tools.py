"""The embedded SmolLM2 does a one-tool task through grammar-constrained tool calls.

Two model calls on CPU: the question gets a ``get_weather`` call whose arguments match the
tool's schema, and the tool's result gets a streamed text answer.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from openai import AsyncOpenAI

from tests.e2e.engine_procs import engine_process, eventually, free_port

pytestmark = [pytest.mark.e2e, pytest.mark.embedded]

MODEL = "smollm2-135m-instruct"
WEATHER = {
    "type": "object",
    "properties": {"city": {"type": "string"}},
    "required": ["city"],
    "additionalProperties": False,
}
TOOLS: list[Any] = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "The current weather of a city.",
            "parameters": WEATHER,
        },
    }
]


async def healthy(url: str) -> bool:
    try:
        async with aiohttp.ClientSession() as http, http.get(f"{url}/health") as reply:
            return reply.status == 200
    except aiohttp.ClientConnectionError:
        return False  # not listening yet


async def test_llamacpp_tools_smollm2_calls_get_weather(tmp_path: Path) -> None:
    pytest.importorskip("llama_cpp", reason="needs the 'embedded' extra (llama-cpp-python)")
    port = free_port()
    args = ["llamacpp", "--port", str(port), "--threads", "2", "--n-ctx", "1024"]
    with engine_process(args, tmp_path / "llama.log"):
        url = f"http://127.0.0.1:{port}"
        await eventually(lambda: healthy(url), bool, "llama.cpp up", timeout_s=120)
        async with AsyncOpenAI(base_url=f"{url}/v1", api_key="x", timeout=300) as client:
            messages: list[Any] = [{"role": "user", "content": "What is the weather in Paris?"}]
            reply = await client.chat.completions.create(
                model=MODEL, messages=messages, tools=TOOLS, temperature=0, max_tokens=48
            )
            choice = reply.choices[0]
            assert choice.finish_reason == "tool_calls"
            calls = choice.message.tool_calls
            assert calls is not None
            assert len(calls) == 1
            call = calls[0]
            assert call.type == "function"
            assert call.id.startswith("call_")
            assert call.function.name == "get_weather"
            arguments = json.loads(call.function.arguments)
            assert set(arguments) == {"city"}  # the schema's only property, required
            assert isinstance(arguments["city"], str)
            assert arguments["city"]

            messages += [
                choice.message.model_dump(exclude_none=True),
                {"role": "tool", "tool_call_id": call.id, "content": "Sunny, 24 degrees"},
            ]
            stream = await client.chat.completions.create(
                model=MODEL,
                messages=messages,
                tools=TOOLS,
                temperature=0,
                max_tokens=24,
                stream=True,
                stream_options={"include_usage": True},
            )
            text, usage = "", None
            async for chunk in stream:
                usage = chunk.usage or usage
                for streamed in chunk.choices:
                    assert not streamed.delta.tool_calls  # after a tool result: text
                    text += streamed.delta.content or ""
    assert text.strip()
    assert usage is not None
    assert usage.completion_tokens > 0
