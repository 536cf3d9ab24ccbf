"""The simulator's HTTP surface: vLLM's OpenAI endpoints, /health and /metrics (aiohttp).

Routes: ``POST /v1/chat/completions``, ``POST /v1/completions`` (streamed or not),
``GET /v1/models``, ``GET /health`` (200 once started, 503 during ``--startup-delay``),
``GET /metrics`` (vLLM names) and ``POST /reset_prefix_cache`` (vLLM's dev endpoint: clears
the prefix cache and publishes ``AllBlocksCleared``; 409 while requests hold blocks).

With ``--allow-runtime-lora-updating`` (vLLM: ``VLLM_ALLOW_RUNTIME_LORA_UPDATING=True``),
vLLM's dynamic LoRA endpoints too: ``POST /v1/load_lora_adapter`` with ``{"lora_name",
"lora_path"}`` (200 and a text message; 400 when a field is missing or the name is already
loaded) and ``POST /v1/unload_lora_adapter`` with ``{"lora_name"}`` (404 when unknown).
Without the flag they are 404, as in vLLM. Adapters are listed by ``/v1/models`` with
``parent`` = the base model, and requests naming an unknown adapter get 404.

A client that closes its connection, streamed or not, aborts its request as vLLM does: it
leaves the running batch (or the queue) and frees its KV blocks at once, and is counted in
``vllm:request_success_total{finished_reason="abort"}``. The server runs with aiohttp's
handler cancellation (:class:`~pilothouse.servers.sim.runner.SimServer`), so a handler
waiting for its tokens is cancelled and the ``finally`` of :func:`_serve` aborts it.

With a script (``--script``), a chat request that a reply matches is answered with that
reply's content and tool calls instead of filler text, at the same token pace
(:mod:`pilothouse.servers.sim.scripted`).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

import orjson
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from pilothouse.engines.tokenizer import filler_text
from pilothouse.errors import BadRequest, NoEndpointAvailable, RequestError, SchedulingError
from pilothouse.openai.errors import error_body, error_from_exception
from pilothouse.servers.sim.faults import Fault
from pilothouse.servers.sim.protocol import (
    DONE,
    CompletionCall,
    completion_body,
    delta_chunk,
    parse_call,
    stream_chunk,
    usage_chunk,
)
from pilothouse.servers.sim.scripted import ScriptedOutput
from pilothouse.servers.sim.settings import SimSettings
from pilothouse.servers.sim.state import SimState
from pilothouse.sim.types import EngineRequest

STATE = web.AppKey("sim_state", SimState)


def create_sim_app(
    settings: SimSettings, *, on_crash: Callable[[], None] | None = None
) -> web.Application:
    """The simulator as an aiohttp application; ``on_crash`` runs for ``--crash-after``.

    KV events start in the startup hook when ``settings.port`` is fixed; with port 0 the
    caller binds first and then calls ``app[STATE].start_kv_events(port)``
    (:class:`~pilothouse.servers.sim.runner.SimServer` does).
    """
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app[STATE] = SimState.build(settings, on_crash)
    app.router.add_post("/v1/chat/completions", _chat)
    app.router.add_post("/v1/completions", _completions)
    app.router.add_get("/v1/models", _models)
    app.router.add_get("/health", _health)
    app.router.add_get("/metrics", _metrics)
    app.router.add_post("/reset_prefix_cache", _reset_prefix_cache)
    if settings.runtime_lora_updating:
        app.router.add_post("/v1/load_lora_adapter", _load_lora_adapter)
        app.router.add_post("/v1/unload_lora_adapter", _unload_lora_adapter)
    app.on_startup.append(_startup)
    app.on_shutdown.append(_shutdown)
    return app


async def _startup(app: web.Application) -> None:
    state = app[STATE]
    state.start()
    if state.settings.port != 0:
        state.start_kv_events(state.settings.port)


async def _shutdown(app: web.Application) -> None:
    await app[STATE].stop()


def _error(exc: RequestError | SchedulingError) -> web.Response:
    status, body, headers = error_from_exception(exc)
    return web.Response(status=status, body=body, headers=headers, content_type="application/json")


async def _health(request: web.Request) -> web.Response:
    if request.app[STATE].ready():
        return web.Response(status=200)
    return _error(NoEndpointAvailable("the engine is starting"))


async def _metrics(request: web.Request) -> web.Response:
    body = request.app[STATE].metrics.render()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def _models(request: web.Request) -> web.Response:
    state = request.app[STATE]
    created = int(time.time())
    base = state.settings.model

    def entry(name: str, root: str, parent: str | None) -> dict[str, object]:
        return {
            "id": name,
            "object": "model",
            "created": created,
            "owned_by": "pilothouse-sim",
            "root": root,
            "parent": parent,
            "max_model_len": state.model.config.max_model_len,
        }

    adapters = [entry(name, path, base) for name, path in state.adapters.items()]
    data = [entry(base, base, None), *adapters]
    body = orjson.dumps({"object": "list", "data": data})
    return web.Response(body=body, content_type="application/json")


async def _load_lora_adapter(request: web.Request) -> web.Response:
    state = request.app[STATE]
    try:
        doc = await _json_object(request)
        message = state.load_adapter(doc.get("lora_name"), doc.get("lora_path"))
    except RequestError as exc:
        return _error(exc)
    return web.Response(status=200, text=message)


async def _unload_lora_adapter(request: web.Request) -> web.Response:
    state = request.app[STATE]
    try:
        doc = await _json_object(request)
        message = state.unload_adapter(doc.get("lora_name"))
    except RequestError as exc:
        return _error(exc)
    return web.Response(status=200, text=message)


async def _json_object(request: web.Request) -> dict[str, object]:
    try:
        doc = orjson.loads(await request.read())
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"request body is not valid JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise BadRequest("request body must be a JSON object")
    return doc


async def _reset_prefix_cache(request: web.Request) -> web.Response:
    state = request.app[STATE]
    event = state.model.reset_prefix_cache()
    if event is None:
        body = error_body("requests are using the KV cache; try again when idle", "conflict")
        return web.Response(status=409, body=body, content_type="application/json")
    await state.runtime.publish((event,))
    return web.Response(status=200)


async def _chat(request: web.Request) -> web.StreamResponse:
    return await _serve(request, "chat")


async def _completions(request: web.Request) -> web.StreamResponse:
    return await _serve(request, "completion")


async def _serve(request: web.Request, kind: str) -> web.StreamResponse:
    state = request.app[STATE]
    prefix = "chatcmpl" if kind == "chat" else "cmpl"
    request_id = f"{prefix}-{uuid.uuid4().hex}"
    try:
        if not state.ready():
            raise NoEndpointAvailable("the engine is starting")
        raw = await request.read()
        call = parse_call(kind, raw, state.tokenizer, state.settings.model, state.loras)
        scripted = state.scripted(call)
        tokens = None if scripted is None else scripted.tokens
        engine_request, start = state.engine_request(call, request_id, tokens)
    except (RequestError, SchedulingError) as exc:
        return _error(exc)
    assert state.faults is not None
    fault = state.faults.draw()
    if fault is Fault.HANG:
        await state.release_hung.wait()
        return _error(NoEndpointAvailable("the engine is shutting down"))
    try:
        if fault is Fault.ERROR:
            return _error(RequestError("simulated engine failure", code="simulated_error"))
        if call.stream:
            return await _stream(request, state, call, engine_request, start, scripted)
        return await _respond(state, call, engine_request, start, scripted)
    finally:
        state.runtime.release(request_id)
        if state.faults.answered():
            state.schedule_crash()


async def _respond(
    state: SimState,
    call: CompletionCall,
    engine_request: EngineRequest,
    start: int,
    scripted: ScriptedOutput | None,
) -> web.Response:
    queue = state.runtime.submit(engine_request)
    tokens = 0
    while True:
        chunk = await queue.get()
        tokens += chunk.tokens
        if chunk.finished is not None:
            request_id, created = engine_request.request_id, int(time.time())
            finished = chunk.finished
            if scripted is None:
                text = filler_text(start, 0, tokens)
                body = completion_body(call, request_id, created, text, finished)
            else:
                body = completion_body(
                    call,
                    request_id,
                    created,
                    "",
                    finished,
                    message=scripted.message(tokens),
                    finish_reason=scripted.finish_reason(finished.finish_reason),
                )
            return web.Response(body=body, content_type="application/json")


async def _stream(
    request: web.Request,
    state: SimState,
    call: CompletionCall,
    engine_request: EngineRequest,
    start: int,
    scripted: ScriptedOutput | None,
) -> web.StreamResponse:
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
    )
    await response.prepare(request)
    queue = state.runtime.submit(engine_request)
    request_id, created = engine_request.request_id, int(time.time())
    offset = 0
    try:
        while True:
            chunk = await queue.get()
            if offset == 0 and call.kind == "chat":
                await response.write(stream_chunk(call, request_id, created, None, role=True))
            finished = chunk.finished
            reason = None if finished is None else finished.finish_reason
            if scripted is not None:
                for delta, end in scripted.step(offset, chunk.tokens, reason):
                    await response.write(delta_chunk(call, request_id, created, delta, end))
            else:
                text = filler_text(start, offset, chunk.tokens)
                await response.write(
                    stream_chunk(call, request_id, created, text, finish_reason=reason)
                )
            offset += chunk.tokens
            if finished is not None:
                break
        if call.include_usage:
            await response.write(usage_chunk(call, request_id, created, finished))
        await response.write(DONE)
        await response.write_eof()
    except ConnectionResetError:
        return response  # the client went away; the finally of _serve aborts the request
    return response
