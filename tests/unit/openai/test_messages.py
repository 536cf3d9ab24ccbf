"""The Anthropic Messages translator: requests into chat, chat answers and streams back."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from pilothouse.errors import BadRequest
from pilothouse.openai.messages import MessagesDialect, MessagesTranslation
from pilothouse.openai.requests import Route, parse_request
from pilothouse.openai.translation import ChatChunks
from tests.unit.openai.chat_payloads import (
    chunk,
    completion,
    events,
    sse,
    text_chunks,
    tool_call,
    tool_chunks,
)

WEATHER_TOOL = {
    "name": "get_weather",
    "description": "The weather in a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
}


def _translate(**doc: Any) -> MessagesTranslation:
    return MessagesTranslation({"model": "m", "max_tokens": 64, **doc})


def _stream(translation: MessagesTranslation, chunks: list[dict[str, Any]]) -> bytes:
    stream = translation.stream()
    reader = ChatChunks()
    data = sse(chunks)
    pieces = [data[i : i + 5] for i in range(0, len(data), 5)]  # events split anywhere
    return b"".join(stream.feed(c) for p in pieces for c in reader.feed(p)) + stream.finish()


def test_messages_request_becomes_a_chat_tool_conversation() -> None:
    chat = _translate(
        system=[{"type": "text", "text": "be brief", "cache_control": {"type": "ephemeral"}}],
        messages=[
            {"role": "user", "content": "weather in Paris?"},
            {
                "role": "assistant",
                "content": [
                    {"type": "thinking", "thinking": "...", "signature": "s"},
                    {"type": "text", "text": "Checking."},
                    {
                        "type": "tool_use",
                        "id": "toolu_1",
                        "name": "get_weather",
                        "input": {"city": "Paris"},
                    },
                ],
            },
            {
                "role": "user",
                "content": [
                    {
                        "type": "tool_result",
                        "tool_use_id": "toolu_1",
                        "content": [{"type": "text", "text": "sunny"}],
                    },
                    {"type": "text", "text": "thanks"},
                ],
            },
        ],
        tools=[WEATHER_TOOL],
        tool_choice={"type": "any", "disable_parallel_tool_use": True},
        stop_sequences=["END"],
        metadata={"user_id": "u1"},
        stream=True,
    ).chat
    assert chat["messages"] == [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "weather in Paris?"},
        {
            "role": "assistant",
            "content": "Checking.",
            "tool_calls": [tool_call("toolu_1", "get_weather", '{"city":"Paris"}')],
        },
        {"role": "tool", "tool_call_id": "toolu_1", "content": "sunny"},
        {"role": "user", "content": "thanks"},
    ]
    assert chat["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "parameters": WEATHER_TOOL["input_schema"],
                "description": "The weather in a city",
            },
        }
    ]
    assert chat["tool_choice"] == "required"
    assert chat["parallel_tool_calls"] is False
    assert chat["stop"] == ["END"]
    assert chat["user"] == "u1"
    assert chat["max_tokens"] == 64
    parse_request(Route.CHAT, orjson.dumps(chat))  # a valid chat request


@pytest.mark.parametrize(
    ("doc", "param"),
    [
        ({"max_tokens": None, "messages": [{"role": "user", "content": "x"}]}, "max_tokens"),
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "system", "content": "x"}]}, "messages.0.role"),
        (
            {"messages": [{"role": "user", "content": [{"type": "document", "source": {}}]}]},
            "messages.0.content.0.type",
        ),
        (
            {
                "messages": [{"role": "user", "content": "x"}],
                "tools": [{"type": "web_search_20250305", "name": "web_search"}],
            },
            "tools.0.type",
        ),
        (
            {"messages": [{"role": "user", "content": "x"}], "stop_sequences": list("abcde")},
            "stop_sequences",
        ),
    ],
)
def test_messages_requests_that_cannot_be_served_are_400_naming_the_field(
    doc: dict[str, Any], param: str
) -> None:
    with pytest.raises(BadRequest) as caught:
        _translate(**doc)
    assert caught.value.param == param


def test_messages_answer_has_text_and_tool_use_blocks() -> None:
    translation = _translate(messages=[{"role": "user", "content": "x"}])
    answer = translation.answer(
        completion(
            "Let me check.", [tool_call("call_1", "get_weather", '{"city": "Paris"}')], "tool_calls"
        )
    )
    assert answer["type"] == "message"
    assert answer["role"] == "assistant"
    assert answer["content"] == [
        {"type": "text", "text": "Let me check."},
        {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"city": "Paris"}},
    ]
    assert answer["stop_reason"] == "tool_use"
    assert answer["usage"] == {"input_tokens": 12, "output_tokens": 7}


@pytest.mark.parametrize(
    ("finish", "extra", "reason", "sequence"),
    [
        ("stop", {}, "end_turn", None),
        ("length", {}, "max_tokens", None),
        ("stop", {"stop_reason": "END"}, "stop_sequence", "END"),
    ],
)
def test_messages_stop_reasons(
    finish: str, extra: dict[str, Any], reason: str, sequence: str | None
) -> None:
    translation = _translate(messages=[{"role": "user", "content": "x"}], stop_sequences=["END"])
    answer = translation.answer(completion("a", finish_reason=finish, **extra))
    assert (answer["stop_reason"], answer["stop_sequence"]) == (reason, sequence)


def test_messages_stream_of_text() -> None:
    got = events(
        _stream(_translate(messages=[{"role": "user", "content": "x"}]), text_chunks("Hel", "lo"))
    )
    assert [n for n, _ in got] == [
        "message_start",
        "ping",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert all(d["type"] == name for name, d in got)
    assert "".join(d["delta"]["text"] for n, d in got if n == "content_block_delta") == "Hello"
    delta = got[-2][1]
    assert delta["delta"]["stop_reason"] == "end_turn"
    assert delta["usage"] == {"input_tokens": 12, "output_tokens": 7}


def test_messages_stream_of_tool_calls() -> None:
    got = events(
        _stream(_translate(messages=[{"role": "user", "content": "x"}]), tool_chunks("hmm"))
    )
    starts = [d for n, d in got if n == "content_block_start"]
    assert [(s["index"], s["content_block"]["type"]) for s in starts] == [
        (0, "text"),
        (1, "tool_use"),
        (2, "tool_use"),
    ]
    assert starts[1]["content_block"]["id"] == "call_a"
    assert starts[1]["content_block"]["name"] == "get_weather"
    partial = [
        d["delta"]["partial_json"] for n, d in got if n == "content_block_delta" and d["index"] == 1
    ]
    assert orjson.loads("".join(partial)) == {"city": "Paris"}
    stops = [d["index"] for n, d in got if n == "content_block_stop"]
    assert stops == [0, 1, 2]
    assert got[-2][1]["delta"]["stop_reason"] == "tool_use"


def test_messages_stream_without_chunks_still_starts_and_stops() -> None:
    stream = _translate(messages=[{"role": "user", "content": "x"}]).stream()
    got = events(stream.feed(chunk({}, "stop")) + stream.finish())
    assert [n for n, _ in got] == ["message_start", "ping", "message_delta", "message_stop"]


def test_messages_broken_stream_ends_with_an_error_event() -> None:
    got = events(_translate(messages=[{"role": "user", "content": "x"}]).stream().fail("gone"))
    assert got[-1] == (
        "error",
        {"type": "error", "error": {"type": "api_error", "message": "gone"}},
    )


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (400, "invalid_request_error"),
        (401, "authentication_error"),
        (404, "not_found_error"),
        (429, "rate_limit_error"),
        (502, "api_error"),
        (503, "overloaded_error"),
    ],
)
def test_messages_errors_have_anthropics_shape(status: int, kind: str) -> None:
    body = orjson.loads(MessagesDialect().error_body(status, "why", "x", None, None))
    assert body == {"type": "error", "error": {"type": kind, "message": "why"}}


def test_messages_answers_and_events_parse_with_the_official_sdk() -> None:
    types = pytest.importorskip("anthropic.types")
    from pydantic import TypeAdapter

    translation = _translate(messages=[{"role": "user", "content": "x"}], tools=[WEATHER_TOOL])
    message = types.Message.model_validate(
        translation.answer(completion("ok", [tool_call("c", "get_weather", "{}")], "tool_calls"))
    )
    assert message.stop_reason == "tool_use"
    adapter = TypeAdapter(types.RawMessageStreamEvent)
    for name, data in events(_stream(translation, tool_chunks("hi"))):
        if name != "ping":  # not a message event; the SDK skips it
            adapter.validate_python(data)
