"""Tool calls from the llama.cpp server: when to call, the schema, messages, wire shapes.

The server tests inject a fake ``Llama`` that writes a fixed text, so they check the
server's side (grammar passed, prompt messages, OpenAI tool calls out) without a model;
tests/e2e/test_llamacpp_tools.py runs the real embedded model.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from openai import AsyncOpenAI

from pilothouse.errors import BadRequest
from pilothouse.openai.tool_calls import conversation_key, tool_call_id
from pilothouse.servers.llamacpp.server import LlamaServerSettings, create_llama_app
from pilothouse.servers.llamacpp.tools import (
    ToolPlan,
    grammar,
    model_messages,
    parse_call,
    tool_plan,
)

WEATHER = {
    "type": "object",
    "properties": {"city": {"type": "string"}},
    "required": ["city"],
}
TOOLS: list[Any] = [
    {"type": "function", "function": {"name": "get_weather", "parameters": WEATHER}},
    {"type": "function", "function": {"name": "get_time"}},
]
ASK: list[Any] = [{"role": "user", "content": "What is the weather in Paris?"}]
CALLED: list[Any] = [
    *ASK,
    {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "c1",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
            }
        ],
    },
    {"role": "tool", "tool_call_id": "c1", "content": [{"type": "text", "text": "Sunny"}]},
]


def names(plan: ToolPlan | None) -> list[str] | None:
    return None if plan is None else [name for name, _ in plan.tools]


@pytest.mark.parametrize(
    ("doc", "expected"),
    [
        ({"messages": ASK}, None),  # no tools
        ({"messages": ASK, "tools": TOOLS}, ["get_weather", "get_time"]),  # auto, user last
        ({"messages": CALLED, "tools": TOOLS}, None),  # auto after a tool result: text
        ({"messages": ASK, "tools": TOOLS, "tool_choice": "none"}, None),
        (
            {"messages": CALLED, "tools": TOOLS, "tool_choice": "required"},
            ["get_weather", "get_time"],
        ),
        (
            {
                "messages": CALLED,
                "tools": TOOLS,
                "tool_choice": {"type": "function", "function": {"name": "get_time"}},
            },
            ["get_time"],
        ),
    ],
)
def test_llamacpp_tools_plan_follows_tool_choice(
    doc: dict[str, Any], expected: list[str] | None
) -> None:
    assert names(tool_plan(doc)) == expected


def test_llamacpp_tools_choice_of_an_unoffered_tool_is_a_400() -> None:
    choice = {"type": "function", "function": {"name": "nope"}}
    with pytest.raises(BadRequest) as caught:
        tool_plan({"messages": ASK, "tools": TOOLS, "tool_choice": choice})
    assert caught.value.param == "tool_choice"


def test_llamacpp_tools_schema_has_one_alternative_per_tool() -> None:
    plan = tool_plan({"messages": ASK, "tools": TOOLS})
    assert plan is not None
    schema = plan.schema()
    weather, time = schema["anyOf"]
    assert weather["properties"] == {"name": {"const": "get_weather"}, "arguments": WEATHER}
    assert time["properties"]["arguments"] == {"type": "object"}  # no parameters given
    assert weather["required"] == ["name", "arguments"]
    loose = plan.schema(typed_arguments=False)
    assert loose["anyOf"][0]["properties"]["arguments"] == {"type": "object"}
    one = ToolPlan((("get_weather", WEATHER),)).schema()
    assert one["properties"]["name"] == {"const": "get_weather"}


def test_llamacpp_tools_messages_render_calls_and_results_as_text() -> None:
    plan = ToolPlan((("get_weather", WEATHER),))
    messages = model_messages([{"role": "system", "content": "Be brief."}, *CALLED], plan)
    assert messages[0]["role"] == "system"
    assert messages[0]["content"].startswith("Be brief.\n\nYou can call these tools:")
    assert "get_weather" in messages[0]["content"]
    assert json.loads(messages[2]["content"]) == {
        "name": "get_weather",
        "arguments": {"city": "Paris"},
    }
    assert messages[3] == {"role": "tool", "content": "Sunny"}
    plain = model_messages(ASK, None)
    assert plain == [{"role": "user", "content": "What is the weather in Paris?"}]
    noted = model_messages(ASK, plan)
    assert [m["role"] for m in noted] == ["system", "user"]


def test_llamacpp_tools_parse_call() -> None:
    key = conversation_key(ASK)
    call = parse_call('{"name": "get_weather", "arguments": {"city": "Paris"}}', key)
    assert call is not None
    assert (call.id, call.name, call.arguments) == (
        tool_call_id(key, 0),
        "get_weather",
        '{"city":"Paris"}',
    )
    for text in ('{"name": "get_weather", "arguments": {"ci', "[]", '{"name": 1}', ""):
        assert parse_call(text, key) is None


class FakeLlama:
    """Writes ``text`` for every chat completion and records what it was asked."""

    def __init__(self, text: str, finish_reason: str = "stop") -> None:
        self.text = text
        self.finish_reason = finish_reason
        self.calls: list[dict[str, Any]] = []

    def token_eos(self) -> int:
        return 0

    def create_chat_completion(self, *, stream: bool, **kwargs: Any) -> Any:
        self.calls.append(kwargs)
        if stream:
            return self._chunks()
        return {
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "created": 0,
            "model": "x",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": self.text},
                    "logprobs": None,
                    "finish_reason": self.finish_reason,
                }
            ],
            "usage": {"prompt_tokens": 5, "completion_tokens": 9, "total_tokens": 14},
        }

    def _chunks(self) -> Iterator[dict[str, Any]]:
        def chunk(delta: dict[str, Any], reason: str | None = None) -> dict[str, Any]:
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": reason}
            return {"id": "c", "object": "chat.completion.chunk", "created": 0, "choices": [choice]}

        yield chunk({"role": "assistant"})
        for index in range(0, len(self.text), 5):
            yield chunk({"content": self.text[index : index + 5]})
        yield chunk({}, self.finish_reason)


CALL_TEXT = '{"name": "get_weather", "arguments": {"city": "Paris"}}'


@pytest.fixture
def fake() -> FakeLlama:
    return FakeLlama(CALL_TEXT)


@pytest.fixture
async def client(fake: FakeLlama) -> AsyncIterator[AsyncOpenAI]:
    app = create_llama_app(LlamaServerSettings(model_path="unused", served_name="smol"), fake)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://llama") as http:
        yield AsyncOpenAI(base_url="http://llama/v1", api_key="x", http_client=http)


async def test_llamacpp_tools_non_streamed_call(client: AsyncOpenAI, fake: FakeLlama) -> None:
    reply = await client.chat.completions.create(model="smol", messages=ASK, tools=TOOLS)
    choice = reply.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    calls = choice.message.tool_calls
    assert calls is not None
    assert calls[0].id == tool_call_id(conversation_key(ASK), 0)
    assert calls[0].function.name == "get_weather"
    assert json.loads(calls[0].function.arguments) == {"city": "Paris"}
    sent = fake.calls[0]
    assert sent["grammar"] is not None
    assert sent["messages"][0]["role"] == "system"
    assert "tools" not in sent  # the server, not llama-cpp-python's handler, runs the tools


async def test_llamacpp_tools_streamed_call(client: AsyncOpenAI) -> None:
    stream = await client.chat.completions.create(
        model="smol", messages=ASK, tools=TOOLS, stream=True
    )
    contents, entries, reasons = [], [], []
    async for chunk in stream:
        for choice in chunk.choices:
            reasons.append(choice.finish_reason)
            contents.append(choice.delta.content)
            entries += choice.delta.tool_calls or []
    assert not any(contents)  # the call's JSON is not sent as text
    assert len(entries) == 1
    entry = entries[0]
    assert entry.index == 0
    assert entry.id == tool_call_id(conversation_key(ASK), 0)
    assert entry.function is not None
    assert entry.function.name == "get_weather"
    assert entry.function.arguments == '{"city":"Paris"}'
    assert reasons[-1] == "tool_calls"


async def test_llamacpp_tools_text_after_a_tool_result(
    client: AsyncOpenAI, fake: FakeLlama
) -> None:
    fake.text = "It is sunny."
    reply = await client.chat.completions.create(model="smol", messages=CALLED, tools=TOOLS)
    assert reply.choices[0].message.content == "It is sunny."
    assert reply.choices[0].message.tool_calls is None
    assert reply.choices[0].finish_reason == "stop"
    assert fake.calls[0].get("grammar") is None
    assert fake.calls[0]["messages"][1]["content"].startswith('{"name": "get_weather"')


async def test_llamacpp_tools_call_cut_by_max_tokens_stays_text(
    client: AsyncOpenAI, fake: FakeLlama
) -> None:
    fake.text, fake.finish_reason = '{"name": "get_weather", "argu', "length"
    reply = await client.chat.completions.create(
        model="smol", messages=ASK, tools=TOOLS, max_tokens=8
    )
    assert reply.choices[0].finish_reason == "length"
    assert reply.choices[0].message.tool_calls is None
    assert reply.choices[0].message.content == fake.text


def test_llamacpp_tools_grammar_falls_back_to_any_object_arguments() -> None:
    """A parameters schema llama.cpp's converter rejects still gets a grammar of a call."""
    llama_grammar = pytest.importorskip("llama_cpp.llama_grammar")
    unsupported = {"type": "object", "properties": {"code": {"type": "string", "pattern": "ab"}}}
    plan = ToolPlan((("lookup", unsupported),))
    with pytest.raises(AssertionError):
        llama_grammar.json_schema_to_gbnf(json.dumps(plan.schema()))
    loose = llama_grammar.json_schema_to_gbnf(json.dumps(plan.schema(typed_arguments=False)))
    assert grammar(plan)._grammar == loose
    typed = ToolPlan((("get_weather", WEATHER),))
    assert grammar(typed)._grammar == llama_grammar.json_schema_to_gbnf(json.dumps(typed.schema()))
