"""Table-driven tests for what the gateway reads from OpenAI request bodies."""

from __future__ import annotations

import orjson
import pytest

from pilothouse.errors import BadRequest
from pilothouse.openai.requests import Route, parse_request

CHAT = Route.CHAT
COMP = Route.COMPLETIONS
EMB = Route.EMBEDDINGS


@pytest.mark.parametrize(
    ("route", "body", "param", "mentions"),
    [
        (CHAT, b"{nope", None, "not valid JSON"),
        (CHAT, b"[1, 2]", None, "JSON object"),
        (CHAT, b'{"messages": [{"role": "user", "content": "x"}]}', "model", "'model'"),
        (CHAT, b'{"model": 3, "messages": []}', "model", "string"),
        (CHAT, b'{"model": "m"}', "messages", "'messages'"),
        (CHAT, b'{"model": "m", "messages": []}', "messages", "minimum length 1"),
        (CHAT, b'{"model": "m", "messages": ["hi"]}', "messages[0]", "an object"),
        (
            CHAT,
            b'{"model": "m", "messages": [{"role": "user", "content": 5}]}',
            "messages[0].content",
            "string or an array",
        ),
        (CHAT, b'{"model": "m", "messages": [{"role": "u"}], "stream": 1}', "stream", "boolean"),
        (
            CHAT,
            b'{"model": "m", "messages": [{"role": "user", "content": ""}], "max_tokens": true}',
            "max_tokens",
            "integer",
        ),
        (
            CHAT,
            b'{"model": "m", "messages": [{"role": "u"}], "stream": true, "stream_options": 3}',
            "stream_options",
            "object",
        ),
        (COMP, b'{"model": "m"}', "prompt", "'prompt'"),
        (COMP, b'{"model": "m", "prompt": {"a": 1}}', "prompt", "token ids"),
        (EMB, b'{"model": "m"}', "input", "'input'"),
        (EMB, b'{"model": "m", "input": 4}', "input", "string or an array"),
    ],
)
def test_bad_bodies_name_the_field(
    route: Route, body: bytes, param: str | None, mentions: str
) -> None:
    with pytest.raises(BadRequest) as caught:
        parse_request(route, body)
    assert caught.value.param == param
    assert mentions in caught.value.message
    assert caught.value.status == 400


@pytest.mark.parametrize(
    ("route", "body", "prompt"),
    [
        (
            CHAT,
            {
                "model": "m",
                "messages": [
                    {"role": "system", "content": "be brief"},
                    {"role": "user", "content": "hi"},
                ],
            },
            "system\nbe brief\nuser\nhi",
        ),
        (
            CHAT,
            {
                "model": "m",
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {"type": "text", "text": "a"},
                            {"type": "image_url", "image_url": {"url": "data:,"}},
                            {"type": "text", "text": "b"},
                        ],
                    }
                ],
            },
            "user\nab",
        ),
        (COMP, {"model": "m", "prompt": "once"}, "once"),
        (COMP, {"model": "m", "prompt": ["a", "b"]}, "a\nb"),
        (COMP, {"model": "m", "prompt": [1, 2, 3]}, "1 2 3"),
        (EMB, {"model": "m", "input": ["x", "y"]}, "x\ny"),
    ],
)
def test_prompt_is_flattened_for_prefix_matching(
    route: Route, body: dict[str, object], prompt: str
) -> None:
    parsed = parse_request(route, orjson.dumps(body))
    assert parsed.prompt == prompt
    assert parsed.model == "m"
    assert parsed.prompt_tokens >= 1


def test_non_streamed_body_is_forwarded_byte_for_byte() -> None:
    raw = b'{"model":"m",  "messages":[{"role":"user","content":"x"}], "temperature": 0.5}'
    assert parse_request(CHAT, raw).body is raw


def test_stream_asks_the_engine_for_usage() -> None:
    raw = b'{"model":"m","messages":[{"role":"user","content":"x"}],"stream":true}'
    parsed = parse_request(CHAT, raw)
    assert parsed.stream
    assert orjson.loads(parsed.body)["stream_options"] == {"include_usage": True}


def test_stream_that_already_asks_for_usage_is_untouched() -> None:
    raw = (
        b'{"model":"m","messages":[{"role":"user","content":"x"}],"stream":true,'
        b'"stream_options":{"include_usage":true}}'
    )
    assert parse_request(CHAT, raw).body is raw


def test_max_completion_tokens_is_read_when_max_tokens_is_absent() -> None:
    raw = b'{"model":"m","messages":[{"role":"user","content":"x"}],"max_completion_tokens":7}'
    assert parse_request(CHAT, raw).max_tokens == 7
