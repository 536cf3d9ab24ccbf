"""Engine error answers reach the client as OpenAI error bodies (issue #11)."""

from __future__ import annotations

import orjson
import pytest

from pilothouse.gateway.upstream import openai_error

VLLM_CONTEXT = orjson.dumps(
    {
        "error": {
            "message": "This model's maximum context length is 2048 tokens. However, you "
            "requested 4000 tokens (3000 in the messages, 1000 in the completion).",
            "type": "BadRequestError",
            "param": None,
            "code": 400,
        }
    }
)


@pytest.mark.parametrize(
    ("status", "body", "kind", "code", "mentions"),
    [
        pytest.param(404, b"404: Not Found", "invalid_request_error", None, "404: Not Found",
                     id="text-404"),
        pytest.param(400, b"Bad Request", "invalid_request_error", None, "Bad Request",
                     id="text-400"),
        pytest.param(422, b'{"detail": "field required"}', "invalid_request_error", None,
                     "field required", id="fastapi-detail"),
        pytest.param(503, b"", "upstream_error", None, "503", id="empty-5xx"),
        pytest.param(400, VLLM_CONTEXT, "invalid_request_error", "context_length_exceeded",
                     "maximum context length", id="vllm-context-length"),
        pytest.param(400, b"maximum context length is 512", "invalid_request_error",
                     "context_length_exceeded", "512", id="text-context-length"),
    ],
)  # fmt: skip
def test_error_answers_become_openai_error_bodies(
    status: int, body: bytes, kind: str, code: str | None, mentions: str
) -> None:
    error = orjson.loads(openai_error(status, body))["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert (error["type"], error["code"]) == (kind, code)
    assert mentions in error["message"]


def test_an_openai_error_body_is_relayed_untouched() -> None:
    body = orjson.dumps({"error": {"message": "m", "type": "t", "param": "p", "code": "c"}})
    assert openai_error(400, body) is body
