"""Front-door validation answers what the OpenAI API answers: status 400, the parameter's
path and OpenAI's error code (table-driven; each row a request the API rejects)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from pilothouse.errors import BadRequest
from pilothouse.openai.requests import Route, parse_request

CHAT, COMP, EMB = Route.CHAT, Route.COMPLETIONS, Route.EMBEDDINGS
USER = [{"role": "user", "content": "hi"}]


def _chat(**extra: Any) -> dict[str, Any]:
    return {"model": "m", "messages": USER, **extra}


REJECTED = [
    (CHAT, _chat(max_tokens=-1), "max_tokens", "integer_below_min_value"),
    (CHAT, _chat(max_tokens="10"), "max_tokens", "invalid_type"),
    (CHAT, _chat(max_completion_tokens=0), "max_completion_tokens", "integer_below_min_value"),
    (CHAT, _chat(temperature=3), "temperature", "decimal_above_max_value"),
    (CHAT, _chat(temperature="hot"), "temperature", "invalid_type"),
    (CHAT, _chat(top_p=-0.1), "top_p", "decimal_below_min_value"),
    (CHAT, _chat(n=0), "n", "integer_below_min_value"),
    (CHAT, _chat(presence_penalty=2.5), "presence_penalty", "decimal_above_max_value"),
    (CHAT, _chat(top_logprobs=21), "top_logprobs", "integer_above_max_value"),
    (CHAT, _chat(stop=["a", "b", "c", "d", "e"]), "stop", "array_above_max_length"),
    (CHAT, _chat(stop=5), "stop", "invalid_type"),
    (CHAT, _chat(stream="yes"), "stream", "invalid_type"),
    (
        CHAT,
        _chat(stream=True, stream_options={"include_usage": 1}),
        "stream_options.include_usage",
        "invalid_type",
    ),
    (CHAT, _chat(logit_bias=[1]), "logit_bias", "invalid_type"),
    (CHAT, _chat(seed=1.5), "seed", "invalid_type"),
    (
        CHAT,
        {"model": "m", "messages": [{"role": "robot", "content": "x"}]},
        "messages[0].role",
        "invalid_value",
    ),
    (
        CHAT,
        {"model": "m", "messages": [{"content": "x"}]},
        "messages[0].role",
        "missing_required_parameter",
    ),
    (
        CHAT,
        {"model": "m", "messages": [{"role": "user"}]},
        "messages[0].content",
        "missing_required_parameter",
    ),
    (
        CHAT,
        {"model": "m", "messages": [{"role": "user", "content": [{"type": "text", "text": 5}]}]},
        "messages[0].content[0].text",
        "invalid_type",
    ),
    (
        CHAT,
        {"model": "m", "messages": [{"role": "user", "content": [{"type": "video"}]}]},
        "messages[0].content[0].type",
        "invalid_value",
    ),
    (
        CHAT,
        {"model": "m", "messages": [{"role": "user", "content": [{"text": "x"}]}]},
        "messages[0].content[0].type",
        "missing_required_parameter",
    ),
    (
        CHAT,
        {"model": "m", "messages": [{"role": "tool", "content": "x"}]},
        "messages[0].tool_call_id",
        "missing_required_parameter",
    ),
    (
        CHAT,
        {"model": "m", "messages": [{"role": "assistant", "tool_calls": [{"type": "function"}]}]},
        "messages[0].tool_calls[0].function",
        "missing_required_parameter",
    ),
    (
        CHAT,
        _chat(tools=[{"type": "function", "function": {"name": "has space"}}]),
        "tools[0].function.name",
        "invalid_value",
    ),
    (
        CHAT,
        _chat(tools=[{"type": "retrieval", "function": {"name": "f"}}]),
        "tools[0].type",
        "invalid_value",
    ),
    (CHAT, _chat(tools=[{"type": "function"}]), "tools[0].function", "missing_required_parameter"),
    (CHAT, _chat(tool_choice="maybe"), "tool_choice", "invalid_value"),
    (CHAT, _chat(tool_choice=3), "tool_choice", "invalid_type"),
    (CHAT, _chat(response_format={"type": "xml"}), "response_format.type", "invalid_value"),
    (CHAT, {"model": "m"}, "messages", "missing_required_parameter"),
    (CHAT, {"messages": USER}, "model", "missing_required_parameter"),
    (CHAT, {"model": "m", "messages": []}, "messages", "empty_array"),
    (
        COMP,
        {"model": "m", "prompt": "x", "max_tokens": -5},
        "max_tokens",
        "integer_below_min_value",
    ),
    (COMP, {"model": "m", "prompt": "x", "logprobs": 6}, "logprobs", "integer_above_max_value"),
    (COMP, {"model": "m", "prompt": "x", "echo": "no"}, "echo", "invalid_type"),
    (COMP, {"model": "m", "prompt": ["a", 1]}, "prompt[1]", "invalid_type"),
    (COMP, {"model": "m", "prompt": [1, -2]}, "prompt[1]", "integer_below_min_value"),
    (COMP, {"model": "m", "prompt": {"text": "x"}}, "prompt", "invalid_type"),
    (COMP, {"model": "m", "prompt": []}, "prompt", "empty_array"),
    (EMB, {"model": "m", "input": ""[:0] or 5}, "input", "invalid_type"),
    (
        EMB,
        {"model": "m", "input": "x", "encoding_format": "hex"},
        "encoding_format",
        "invalid_value",
    ),
    (EMB, {"model": "m", "input": "x", "dimensions": 0}, "dimensions", "integer_below_min_value"),
    (EMB, {"model": "m", "input": []}, "input", "empty_array"),
]


@pytest.mark.parametrize(("route", "body", "param", "code"), REJECTED)
def test_requests_the_openai_api_rejects_are_400_with_its_code(
    route: Route, body: dict[str, Any], param: str, code: str
) -> None:
    with pytest.raises(BadRequest) as caught:
        parse_request(route, orjson.dumps(body))
    error = caught.value
    assert (error.status, error.param, error.code) == (400, param, code), error.message
    assert param in error.message


ACCEPTED = [
    (CHAT, _chat(max_tokens=16, temperature=0.7, top_p=1, n=1, stop="\n", seed=3)),
    (CHAT, _chat(top_k=40, min_p=0.05, repetition_penalty=1.1)),  # vLLM's extra parameters
    (
        CHAT,
        {
            "model": "m",
            "messages": [
                {"role": "developer", "content": "be brief"},
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "hi"},
                        {"type": "image_url", "image_url": {"url": "data:,"}},
                    ],
                },
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": "c1",
                            "type": "function",
                            "function": {"name": "f", "arguments": "{}"},
                        }
                    ],
                },
                {"role": "tool", "tool_call_id": "c1", "content": "42"},
            ],
            "tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}],
            "tool_choice": {"type": "function", "function": {"name": "f"}},
        },
    ),
    (CHAT, _chat(stream=True, stream_options={"include_usage": False}, max_tokens=None)),
    (COMP, {"model": "m", "prompt": [[1, 2], [3]], "max_tokens": 0, "echo": True}),
    (EMB, {"model": "m", "input": [[1, 2]], "encoding_format": "base64", "dimensions": 8}),
]


@pytest.mark.parametrize(("route", "body"), ACCEPTED)
def test_valid_requests_pass(route: Route, body: dict[str, Any]) -> None:
    parsed = parse_request(route, orjson.dumps(body))
    assert parsed.model == "m"


def test_a_body_too_deep_to_re_encode_is_400_not_500() -> None:
    """orjson reads 1,024 levels but writes only 254: asking a stream for usage re-encodes."""
    nested = b'{"model":"m","messages":[{"role":"user","content":"x"}],"stream":true,"z":'
    nested += b"[" * 300 + b"]" * 300 + b"}"
    with pytest.raises(BadRequest) as caught:
        parse_request(CHAT, nested)
    assert caught.value.status == 400


def test_of_two_bad_fields_the_error_names_the_first_in_the_tables_order() -> None:
    """Validation walks the fields a body has (fewer than the table's); the error it gives
    does not depend on the order the body lists its fields in."""
    for body in (
        {"temperature": 9, "max_tokens": -1, "model": "m", "messages": USER},
        {"max_tokens": -1, "model": "m", "messages": USER, "temperature": 9},
    ):
        with pytest.raises(BadRequest) as caught:
            parse_request(CHAT, orjson.dumps(body))
        assert caught.value.param == "temperature"
