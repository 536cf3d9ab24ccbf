"""The Responses API translator: requests into chat, chat answers and streams back."""

from __future__ import annotations

from typing import Any

import pytest

from pilothouse.errors import BadRequest
from pilothouse.openai.requests import Route, parse_request
from pilothouse.openai.responses import ResponsesTranslation
from pilothouse.openai.translation import ChatChunks
from tests.unit.openai.chat_payloads import (
    completion,
    events,
    sse,
    text_chunks,
    tool_call,
    tool_chunks,
)

WEATHER_TOOL = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
}


def _translate(**doc: Any) -> ResponsesTranslation:
    return ResponsesTranslation({"model": "m", **doc})


def _stream(translation: ResponsesTranslation, chunks: list[dict[str, Any]]) -> bytes:
    stream = translation.stream()
    reader = ChatChunks()
    data = sse(chunks)
    out = b"".join(
        stream.feed(c) for i in range(0, len(data), 7) for c in reader.feed(data[i : i + 7])
    )
    return out + stream.finish()


def test_responses_string_input_and_instructions_become_messages() -> None:
    chat = _translate(input="hi", instructions="be brief", max_output_tokens=9).chat
    assert chat["messages"] == [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "hi"},
    ]
    assert chat["max_tokens"] == 9
    parse_request(Route.CHAT, __import__("orjson").dumps(chat))  # a valid chat request


def test_responses_items_become_a_tool_conversation() -> None:
    chat = _translate(
        input=[
            {"role": "user", "content": [{"type": "input_text", "text": "weather?"}]},
            {
                "type": "function_call",
                "call_id": "c1",
                "name": "get_weather",
                "arguments": '{"city":"Paris"}',
            },
            {"type": "function_call_output", "call_id": "c1", "output": "sunny"},
            {"type": "reasoning", "summary": []},
        ],
        tools=[WEATHER_TOOL],
        tool_choice={"type": "function", "name": "get_weather"},
        stream=True,
    ).chat
    assert chat["messages"] == [
        {"role": "user", "content": "weather?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [tool_call("c1", "get_weather", '{"city":"Paris"}')],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
    ]
    assert chat["tools"] == [
        {"type": "function", "function": {k: v for k, v in WEATHER_TOOL.items() if k != "type"}}
    ]
    assert chat["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    assert chat["stream"] is True


def test_responses_function_calls_join_the_assistant_message_before_them() -> None:
    chat = _translate(
        input=[
            {"role": "user", "content": "x"},
            {"role": "assistant", "content": [{"type": "output_text", "text": "let me see"}]},
            {"type": "function_call", "call_id": "a", "name": "f", "arguments": "{}"},
            {"type": "function_call", "call_id": "b", "name": "g", "arguments": "{}"},
        ]
    ).chat
    assistant = chat["messages"][1]
    assert assistant["content"] == "let me see"
    assert [c["id"] for c in assistant["tool_calls"]] == ["a", "b"]


@pytest.mark.parametrize(
    ("doc", "param"),
    [
        ({"input": "x", "previous_response_id": "resp_1"}, "previous_response_id"),
        ({"input": "x", "tools": [{"type": "web_search"}]}, "tools[0].type"),
        ({"input": [{"type": "item_reference", "id": "i"}]}, "input[0].type"),
        ({"input": 3}, "input"),
        ({"input": []}, "input"),
        ({"input": "x", "background": True}, "background"),
        ({"input": [{"role": "robot", "content": "x"}]}, "input[0].role"),
    ],
)
def test_responses_requests_that_cannot_be_served_are_400_naming_the_field(
    doc: dict[str, Any], param: str
) -> None:
    with pytest.raises(BadRequest) as caught:
        _translate(**doc)
    assert caught.value.param == param


def test_responses_answer_has_text_and_function_call_items() -> None:
    answer = _translate(input="x").answer(
        completion(
            "checking", [tool_call("call_1", "get_weather", '{"city": "Paris"}')], "tool_calls"
        )
    )
    assert answer["object"] == "response"
    assert answer["status"] == "completed"
    message, call = answer["output"]
    assert message["type"] == "message"
    assert message["content"][0] == {
        "type": "output_text",
        "text": "checking",
        "annotations": [],
        "logprobs": [],
    }
    assert call["type"] == "function_call"
    assert (call["call_id"], call["name"], call["arguments"]) == (
        "call_1",
        "get_weather",
        '{"city": "Paris"}',
    )
    assert answer["usage"]["input_tokens"] == 12
    assert answer["usage"]["output_tokens"] == 7
    assert answer["usage"]["total_tokens"] == 19


def test_responses_answer_cut_at_max_tokens_is_incomplete() -> None:
    answer = _translate(input="x").answer(completion("abc", finish_reason="length"))
    assert answer["status"] == "incomplete"
    assert answer["incomplete_details"] == {"reason": "max_output_tokens"}


def test_responses_stream_of_text() -> None:
    got = events(_stream(_translate(input="x", stream=True), text_chunks("Hel", "lo")))
    names = [name for name, _ in got]
    assert names == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [d["sequence_number"] for _, d in got] == list(range(len(got)))
    assert all(d["type"] == name for name, d in got)
    assert got[6][1]["text"] == "Hello"
    final = got[-1][1]["response"]
    assert final["output"][0]["content"][0]["text"] == "Hello"
    assert final["usage"]["output_tokens"] == 7


def test_responses_stream_of_tool_calls() -> None:
    got = events(_stream(_translate(input="x", stream=True), tool_chunks("hmm")))
    names = [name for name, _ in got]
    assert names.count("response.output_item.added") == 3
    assert names.count("response.function_call_arguments.delta") == 4
    dones = [d for name, d in got if name == "response.function_call_arguments.done"]
    assert [(d["name"], d["arguments"]) for d in dones] == [
        ("get_weather", '{"city": "Paris"}'),
        ("get_time", "{}"),
    ]
    # The text item closes before the first call's item opens.
    assert names.index("response.output_item.done") < names.index(
        "response.function_call_arguments.delta"
    )
    final = got[-1][1]["response"]
    assert [item["type"] for item in final["output"]] == [
        "message",
        "function_call",
        "function_call",
    ]
    assert final["output"][1]["call_id"] == "call_a"


def test_responses_broken_stream_ends_with_error_and_failed() -> None:
    stream = _translate(input="x", stream=True).stream()
    got = events(stream.fail("gone"))
    assert [n for n, _ in got] == [
        "response.created",
        "response.in_progress",
        "error",
        "response.failed",
    ]
    assert got[2][1]["message"] == "gone"


def test_responses_answers_and_events_parse_with_the_official_sdk() -> None:
    responses = pytest.importorskip("openai.types.responses")
    from pydantic import TypeAdapter

    translation = _translate(input="x", tools=[WEATHER_TOOL])
    answer = responses.Response.model_validate(
        translation.answer(completion("ok", [tool_call("c", "get_weather", "{}")]))
    )
    assert answer.output_text == "ok"
    adapter = TypeAdapter(responses.ResponseStreamEvent)
    for _, data in events(_stream(translation, tool_chunks("hi"))):
        adapter.validate_python(data)
