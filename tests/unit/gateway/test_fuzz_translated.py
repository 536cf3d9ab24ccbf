"""Property-based fuzzing of the Responses and Messages translators (``pytest -k fuzz``).

Whatever JSON a client sends to ``/v1/responses`` or ``/v1/messages``, the front door
either translates it into a valid chat request or raises :class:`BadRequest` (a 400 in the
route's error shape) — never another exception, which the gateway would answer as a 500.
"""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pilothouse.errors import BadRequest
from pilothouse.gateway.translated import translate_request
from pilothouse.openai.messages import MessagesDialect
from pilothouse.openai.requests import ParsedRequest
from pilothouse.openai.responses import ResponsesDialect
from pilothouse.openai.translation import Dialect

_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=12),
    st.sampled_from(["user", "assistant", "tool", "message", "text", "function", "tool_use",
                     "tool_result", "function_call", "function_call_output", "input_text",
                     "auto", "any", "image", "base64"]),
)  # fmt: skip
_keys = st.sampled_from(
    ["model", "input", "messages", "instructions", "system", "tools", "tool_choice", "stream",
     "max_tokens", "max_output_tokens", "stop_sequences", "text", "format", "role", "content",
     "type", "text", "name", "arguments", "call_id", "output", "id", "input_schema",
     "parameters", "tool_use_id", "source", "metadata", "user_id", "is_error"]
)  # fmt: skip
_shaped = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_keys, inner, max_size=5),
    max_leaves=30,
)
_VALID: dict[str, dict[str, Any]] = {
    "/v1/responses": {"model": "m", "input": "hi"},
    "/v1/messages": {
        "model": "m",
        "max_tokens": 8,
        "messages": [{"role": "user", "content": "hi"}],
    },
}
_DIALECTS: list[Dialect] = [ResponsesDialect(), MessagesDialect()]
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _translates_or_400(dialect: Dialect, doc: Any) -> None:
    outcome: ParsedRequest | BadRequest
    try:
        _, outcome = translate_request(dialect, orjson.dumps(doc))
    except BadRequest as exc:
        outcome = exc
    if isinstance(outcome, BadRequest):
        assert (outcome.status, bool(outcome.message)) == (400, True)
    else:
        assert isinstance(outcome.model, str)


@FUZZ
@given(dialect=st.sampled_from(_DIALECTS), extra=st.dictionaries(_keys, _shaped, max_size=5))
def test_fuzz_responses_and_messages_with_mutated_fields(
    dialect: Dialect, extra: dict[str, Any]
) -> None:
    _translates_or_400(dialect, {**_VALID[dialect.path], **extra})


@FUZZ
@given(item=st.dictionaries(_keys, _shaped, max_size=6))
def test_fuzz_responses_input_items(item: dict[str, Any]) -> None:
    _translates_or_400(ResponsesDialect(), {"model": "m", "input": [item]})


@FUZZ
@given(blocks=st.lists(st.dictionaries(_keys, _shaped, max_size=6), max_size=3),
       role=st.sampled_from(["user", "assistant"]))  # fmt: skip
def test_fuzz_messages_content_blocks(blocks: list[dict[str, Any]], role: str) -> None:
    doc = {"model": "m", "max_tokens": 8, "messages": [{"role": role, "content": blocks}]}
    _translates_or_400(MessagesDialect(), doc)
