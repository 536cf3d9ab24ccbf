"""Property-based fuzzing of the OpenAI parsers (``pytest -k fuzz``).

Whatever bytes or JSON a client sends, ``parse_request`` either parses it or raises
:class:`BadRequest` (a 400 with a message) — never another exception, which the gateway
would answer as a 500.
"""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pilothouse.errors import BadRequest
from pilothouse.openai.requests import ParsedRequest, Route, parse_request

_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
)
_json = st.recursive(
    _scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)
_keys = st.sampled_from(
    [
        "model",
        "messages",
        "prompt",
        "input",
        "stream",
        "stream_options",
        "max_tokens",
        "temperature",
        "tools",
        "tool_choice",
        "stop",
        "n",
        "role",
        "content",
        "type",
        "text",
        "function",
        "name",
        "tool_calls",
        "tool_call_id",
        "image_url",
        "response_format",
    ]
)
_shaped = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_keys, inner, max_size=5),
    max_leaves=25,
)
_VALID: dict[Route, dict[str, Any]] = {
    Route.CHAT: {"model": "m", "messages": [{"role": "user", "content": "hi"}]},
    Route.COMPLETIONS: {"model": "m", "prompt": "hi"},
    Route.EMBEDDINGS: {"model": "m", "input": "hi"},
}
FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _parses_or_400(route: Route, raw: bytes) -> None:
    outcome: ParsedRequest | BadRequest
    try:
        outcome = parse_request(route, raw)
    except BadRequest as exc:
        outcome = exc
    if isinstance(outcome, BadRequest):
        assert (outcome.status, bool(outcome.message)) == (400, True)
        assert outcome.param is None or isinstance(outcome.param, str)
    else:
        assert isinstance(outcome.model, str)


@FUZZ
@given(route=st.sampled_from(list(Route)), raw=st.binary(max_size=200))
def test_fuzz_arbitrary_bytes(route: Route, raw: bytes) -> None:
    _parses_or_400(route, raw)


@FUZZ
@given(route=st.sampled_from(list(Route)), doc=_json)
def test_fuzz_arbitrary_json(route: Route, doc: Any) -> None:
    _parses_or_400(route, orjson.dumps(doc))


@FUZZ
@given(route=st.sampled_from(list(Route)), extra=st.dictionaries(_keys, _shaped, max_size=4))
def test_fuzz_valid_bodies_with_mutated_fields(route: Route, extra: dict[str, Any]) -> None:
    _parses_or_400(route, orjson.dumps({**_VALID[route], **extra}))


@FUZZ
@given(message=st.dictionaries(_keys, _shaped, max_size=5), stream=st.booleans())
def test_fuzz_chat_messages(message: dict[str, Any], stream: bool) -> None:
    body = {"model": "m", "messages": [message], "stream": stream}
    _parses_or_400(Route.CHAT, orjson.dumps(body))
