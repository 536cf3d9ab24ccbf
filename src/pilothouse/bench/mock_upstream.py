"""A fast mock OpenAI engine for overhead benchmarks: fixed answers, no model, no delay.

``POST /v1/chat/completions`` and ``POST /v1/completions`` answer a fixed ~330-byte JSON
completion with usage, or with ``"stream": true`` a 12-event SSE stream followed by a usage
chunk and ``data: [DONE]``, each event written separately as an engine would. ``GET /v1/models``
lists the one model. Every answer is prebuilt bytes, so the mock's own cost per request is
as small as aiohttp allows.

Run it as its own process so its CPU time is not charged to whatever it is measured with::

    python -m pilothouse.bench.mock_upstream --port 0

It prints ``mock upstream is ready: http://HOST:PORT`` once listening and stops on SIGTERM.
"""

from __future__ import annotations

import asyncio
import signal
import sys

import click
import orjson
from aiohttp import web

MODEL = "mock-model"
READY_PREFIX = "mock upstream is ready: "
STREAM_EVENTS = 12
_CREATED = 1_700_000_000
_USAGE = {"prompt_tokens": 9, "completion_tokens": STREAM_EVENTS, "total_tokens": 9 + STREAM_EVENTS}


def chat_completion_body() -> bytes:
    """The fixed non-streamed chat completion (about 330 bytes)."""
    return orjson.dumps(
        {
            "id": "chatcmpl-mock-0001",
            "object": "chat.completion",
            "created": _CREATED,
            "model": MODEL,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "Hello! This is a fixed answer."},
                    "logprobs": None,
                    "finish_reason": "stop",
                }
            ],
            "usage": _USAGE,
            "system_fingerprint": "mock",
        }
    )


def text_completion_body() -> bytes:
    """The fixed non-streamed legacy completion."""
    return orjson.dumps(
        {
            "id": "cmpl-mock-0001",
            "object": "text_completion",
            "created": _CREATED,
            "model": MODEL,
            "choices": [
                {"index": 0, "text": " Hello! This is a fixed answer.", "finish_reason": "stop"}
            ],
            "usage": _USAGE,
        }
    )


def _event(doc: object) -> bytes:
    return b"data: " + orjson.dumps(doc) + b"\n\n"


def chat_stream_events() -> list[bytes]:
    """The 12 token events, the usage chunk and ``[DONE]``, one SSE event per item."""
    base = {
        "id": "chatcmpl-mock-0001",
        "object": "chat.completion.chunk",
        "created": _CREATED,
        "model": MODEL,
    }
    events = []
    for i in range(STREAM_EVENTS):
        last = i == STREAM_EVENTS - 1
        delta = {"role": "assistant", "content": "Hello"} if i == 0 else {"content": f" tok{i}"}
        choice = {"index": 0, "delta": delta, "finish_reason": "stop" if last else None}
        events.append(_event({**base, "choices": [choice]}))
    events.append(_event({**base, "choices": [], "usage": _USAGE}))
    events.append(b"data: [DONE]\n\n")
    return events


def text_stream_events() -> list[bytes]:
    """The legacy-completions variant of :func:`chat_stream_events`."""
    base = {
        "id": "cmpl-mock-0001",
        "object": "text_completion",
        "created": _CREATED,
        "model": MODEL,
    }
    events = []
    for i in range(STREAM_EVENTS):
        last = i == STREAM_EVENTS - 1
        choice = {"index": 0, "text": f" tok{i}", "finish_reason": "stop" if last else None}
        events.append(_event({**base, "choices": [choice]}))
    events.append(_event({**base, "choices": [], "usage": _USAGE}))
    events.append(b"data: [DONE]\n\n")
    return events


def _wants_stream(raw: bytes) -> bool:
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return False
    return isinstance(doc, dict) and doc.get("stream") is True


def _completion_handler(whole: bytes, events: list[bytes]):  # type: ignore[no-untyped-def]
    async def handler(request: web.Request) -> web.StreamResponse:
        if not _wants_stream(await request.read()):
            return web.Response(body=whole, content_type="application/json")
        resp = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        await resp.prepare(request)
        for event in events:
            await resp.write(event)
        await resp.write_eof()
        return resp

    return handler


def create_mock_app() -> web.Application:
    """The mock engine as an aiohttp application (usable in-process by tests too)."""
    models = orjson.dumps(
        {
            "object": "list",
            "data": [{"id": MODEL, "object": "model", "created": _CREATED, "owned_by": "mock"}],
        }
    )

    async def list_models(request: web.Request) -> web.Response:
        return web.Response(body=models, content_type="application/json")

    async def health(request: web.Request) -> web.Response:
        return web.Response(body=b'{"status":"ok"}', content_type="application/json")

    app = web.Application()
    app.router.add_post(
        "/v1/chat/completions", _completion_handler(chat_completion_body(), chat_stream_events())
    )
    app.router.add_post(
        "/v1/completions", _completion_handler(text_completion_body(), text_stream_events())
    )
    app.router.add_get("/v1/models", list_models)
    app.router.add_get("/health", health)
    return app


async def serve_mock(host: str, port: int) -> None:
    """Serve until SIGINT/SIGTERM; announce the bound address on stdout."""
    runner = web.AppRunner(create_mock_app(), access_log=None, handle_signals=False)
    await runner.setup()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        site = web.TCPSite(runner, host, port, backlog=1024)
        await site.start()
        bound_host, bound_port = runner.addresses[0][:2]
        print(f"{READY_PREFIX}http://{bound_host}:{bound_port}", flush=True)
        await stop.wait()
    finally:
        await runner.cleanup()


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Bind address.")
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=0,
    show_default=True,
    help="Port (0 picks a free one; the ready line says which).",
)
def main(host: str, port: int) -> None:
    """Run the mock OpenAI upstream until SIGTERM."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop ships with uvicorn[standard]
        asyncio.run(serve_mock(host, port))
    else:
        uvloop.run(serve_mock(host, port))


if __name__ == "__main__":
    sys.exit(main())
