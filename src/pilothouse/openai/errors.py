"""OpenAI-format error bodies, built in one place for every status pilothouse returns."""

from __future__ import annotations

import orjson

from pilothouse.errors import RateLimited, RequestError, RequestShed, SchedulingError


def error_body(
    message: str,
    error_type: str,
    *,
    param: str | None = None,
    code: str | int | None = None,
) -> bytes:
    """``{"error": {"message", "type", "param", "code"}}`` as the OpenAI API sends it."""
    return orjson.dumps(
        {"error": {"message": message, "type": error_type, "param": param, "code": code}}
    )


def error_from_exception(exc: RequestError | SchedulingError) -> tuple[int, bytes, dict[str, str]]:
    """Status, body and extra headers for one of our client-facing errors."""
    headers: dict[str, str] = {}
    if isinstance(exc, RequestShed | RateLimited):
        headers["retry-after"] = str(max(1, round(exc.retry_after)))
    if isinstance(exc, RequestError):
        body = error_body(exc.message, exc.error_type, param=exc.param, code=exc.code)
    else:
        body = error_body(str(exc), exc.error_type)
    return exc.status, body, headers


def sse_error_event(message: str, error_type: str = "upstream_error") -> bytes:
    """A final SSE event telling a streaming client the stream broke, then ``[DONE]``."""
    return b"data: " + error_body(message, error_type) + b"\n\ndata: [DONE]\n\n"
