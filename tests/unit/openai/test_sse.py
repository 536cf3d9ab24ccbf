"""Usage and finish reasons read out of whole answers and stream tails."""

from __future__ import annotations

import orjson
import pytest

from pilothouse.openai.sse import json_usage, json_usage_and_finish, sse_usage, sse_usage_and_finish


def _event(doc: object) -> bytes:
    return b"data: " + orjson.dumps(doc) + b"\n\n"


def test_a_whole_answer_gives_its_usage_and_every_choices_finish_reason() -> None:
    body = orjson.dumps(
        {
            "choices": [
                {"index": 0, "finish_reason": "stop"},
                {"index": 1, "finish_reason": "tool_calls"},
                {"index": 2, "finish_reason": None},
            ],
            "usage": {"prompt_tokens": 3, "completion_tokens": 2},
        }
    )
    usage, reasons = json_usage_and_finish(body)
    assert usage == {"prompt_tokens": 3, "completion_tokens": 2}
    assert reasons == ("stop", "tool_calls")
    assert json_usage(body) == usage


@pytest.mark.parametrize("body", [b"not json", b"[1, 2]", b'{"choices": "x"}', b"{}"])
def test_odd_bodies_give_nothing(body: bytes) -> None:
    usage, reasons = json_usage_and_finish(body)
    assert reasons == ()
    assert usage is None


def test_a_stream_tail_gives_the_finish_reason_and_the_usage_chunk() -> None:
    tail = (
        _event({"choices": [{"index": 0, "delta": {"content": "hi"}, "finish_reason": None}]})
        + _event({"choices": [{"index": 0, "delta": {}, "finish_reason": "length"}]})
        + _event({"choices": [], "usage": {"prompt_tokens": 7, "completion_tokens": 2}})
        + b"data: [DONE]\n\n"
    )
    assert sse_usage_and_finish(tail) == ({"prompt_tokens": 7, "completion_tokens": 2}, ("length",))
    assert sse_usage(tail) == {"prompt_tokens": 7, "completion_tokens": 2}
    assert sse_usage_and_finish(tail, finish=False) == (sse_usage(tail), ())
    spaced = b'data: {"choices": [{"index": 0, "finish_reason": "stop"}]}\n\n'
    assert sse_usage_and_finish(spaced) == (None, ("stop",))
    assert sse_usage_and_finish(b'data: {"finish_reason":"stop", broken\n\n') == (None, ())


def test_a_tail_cut_mid_event_and_usage_in_every_chunk() -> None:
    """The last usage wins (vLLM's continuous usage stats put one in every chunk); a first
    event cut by the tail's limit is skipped; two choices finishing give both reasons."""
    events = [
        _event({"choices": [{"index": i % 2, "finish_reason": None}], "usage": {"n": i}})
        for i in range(5)
    ]
    tail = (
        b'nt": "cut"}]}\n\n'
        + b"".join(events)
        + _event({"choices": [{"index": 0, "finish_reason": "stop"}], "usage": {"n": 5}})
        + _event({"choices": [{"index": 1, "finish_reason": "length"}], "usage": {"n": 6}})
        + b"data: [DONE]\n\n"
    )
    assert sse_usage_and_finish(tail) == ({"n": 6}, ("stop", "length"))
    assert sse_usage_and_finish(b"") == (None, ())
    assert sse_usage_and_finish(b"data: [DONE]\n\n") == (None, ())
