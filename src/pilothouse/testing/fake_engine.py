"""A scriptable fake OpenAI engine for tests (yours and ours).

Each instance answers chat and text completions with a fixed reply, streamed or not, and
can be told to fail in the ways real engines fail: answer an HTTP error, hang before the
first byte, or drop the connection in the middle of a stream. For realistic behaviour
(batching, prefix cache, vLLM metrics, KV events) use ``pilothouse engine sim`` instead.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import orjson
from aiohttp import web

from pilothouse.openai.errors import error_body


@dataclass(slots=True)
class FakeBehaviour:
    """What the next requests get; change the fields at any time."""

    status: int = 200
    hang_s: float = 0.0
    break_after_chunks: int | None = None
    chunks: int = 4
    requests: int = 0
    seen_bodies: list[bytes] = field(default_factory=list)
    seen_headers: list[dict[str, str]] = field(default_factory=list)
    """Each request's headers (lowercase names), e.g. to check a ``traceparent``."""


BEHAVIOUR = web.AppKey("behaviour", FakeBehaviour)


def create_fake_engine(model: str, behaviour: FakeBehaviour | None = None) -> web.Application:
    """An aiohttp app serving ``model``; the behaviour is at ``app[BEHAVIOUR]``."""
    state = behaviour or FakeBehaviour()
    app = web.Application()
    app[BEHAVIOUR] = state

    async def health(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def models(request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": model, "object": "model"}]})

    async def complete(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        state.requests += 1
        state.seen_bodies.append(body)
        state.seen_headers.append({k.lower(): v for k, v in request.headers.items()})
        if state.hang_s:
            await asyncio.sleep(state.hang_s)
        if state.status != 200:
            return web.Response(
                body=error_body("fake failure", "server_error"),
                status=state.status,
                content_type="application/json",
            )
        doc = orjson.loads(body)
        if doc.get("stream"):
            return await _stream(request, model, state, doc)
        return web.Response(body=orjson.dumps(_reply(model)), content_type="application/json")

    app.router.add_get("/health", health)
    app.router.add_get("/v1/models", models)
    app.router.add_post("/v1/chat/completions", complete)
    app.router.add_post("/v1/completions", complete)
    return app


def _reply(model: str) -> dict[str, object]:
    return {
        "id": "fake-1",
        "object": "chat.completion",
        "created": 0,
        "model": model,
        "choices": [
            {
                "index": 0,
                "finish_reason": "stop",
                "message": {"role": "assistant", "content": "fake reply"},
            }
        ],
        "usage": {"prompt_tokens": 7, "completion_tokens": 2, "total_tokens": 9},
    }


async def _stream(
    request: web.Request, model: str, state: FakeBehaviour, doc: dict[str, object]
) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    for i in range(state.chunks):
        if state.break_after_chunks is not None and i == state.break_after_chunks:
            assert request.transport is not None
            request.transport.close()  # the engine dies mid-stream
            return response
        chunk = {
            "id": "fake-1",
            "object": "chat.completion.chunk",
            "created": 0,
            "model": model,
            "choices": [{"index": 0, "delta": {"content": f"t{i} "}, "finish_reason": None}],
        }
        await response.write(b"data: " + orjson.dumps(chunk) + b"\n\n")
    options = doc.get("stream_options")
    if isinstance(options, dict) and options.get("include_usage"):
        usage = {
            "id": "fake-1",
            "object": "chat.completion.chunk",
            "created": 0,
            "model": model,
            "choices": [],
            "usage": {
                "prompt_tokens": 7,
                "completion_tokens": state.chunks,
                "total_tokens": 7 + state.chunks,
            },
        }
        await response.write(b"data: " + orjson.dumps(usage) + b"\n\n")
    await response.write(b"data: [DONE]\n\n")
    await response.write_eof()
    return response
