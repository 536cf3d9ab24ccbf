"""An OpenAI-compatible HTTP server around llama-cpp-python's bindings.

Why not ``python -m llama_cpp.server``: it ignores ``stream_options.include_usage`` (so a
gateway cannot account streamed tokens) and has no ``/health``. This server adds both and
keeps llama.cpp's own chat templating, sampling and prompt reuse.

A client that closes its connection stops its generation at the next token, streamed or
not, and frees the model for the next request (see :mod:`.runner`). ``/health`` reports
``running`` and ``waiting`` requests, ``sampled_tokens`` (all finished generations) and
``cancelled`` (generations stopped early because their client left).

A chat request offering ``tools`` may be answered with an OpenAI tool call, written by the
model under a JSON-schema grammar (:mod:`.tools` says when); streamed, the call comes as one
``delta.tool_calls`` entry (id, name and whole arguments) once the model has finished it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from pilothouse.errors import BadRequest, ModelNotFound, RequestError
from pilothouse.openai.errors import error_body
from pilothouse.openai.tool_calls import conversation_key
from pilothouse.servers.llamacpp.runner import SerialRunner, TokenCount
from pilothouse.servers.llamacpp.tools import (
    as_tool_call,
    grammar,
    model_messages,
    tool_call_chunks,
    tool_plan,
)

_SAMPLING_KEYS = (
    "temperature",
    "top_p",
    "top_k",
    "stop",
    "seed",
    "presence_penalty",
    "frequency_penalty",
    "repeat_penalty",
    "min_p",
)


@dataclass(frozen=True, slots=True)
class LlamaServerSettings:
    model_path: str
    served_name: str
    n_ctx: int = 4096
    n_threads: int | None = None
    default_max_tokens: int = 256


def create_llama_app(settings: LlamaServerSettings, llama: Any | None = None) -> Starlette:
    """The ASGI app; ``llama`` may be injected (tests), else the model is loaded here."""
    if llama is None:
        llama = _load(settings)
    engine = _Engine(settings, llama, SerialRunner())
    return Starlette(
        routes=[
            Route("/v1/chat/completions", engine.chat, methods=["POST"]),
            Route("/v1/completions", engine.completions, methods=["POST"]),
            Route("/v1/embeddings", engine.embeddings, methods=["POST"]),
            Route("/v1/models", engine.models, methods=["GET"]),
            Route("/health", engine.health, methods=["GET"]),
        ]
    )


def _load(settings: LlamaServerSettings) -> Any:
    from llama_cpp import Llama  # heavy import, only where the engine really runs

    return Llama(
        model_path=settings.model_path,
        n_ctx=settings.n_ctx,
        n_threads=settings.n_threads,
        verbose=False,
    )


def _json(doc: object, status: int = 200) -> Response:
    return Response(orjson.dumps(doc), status, media_type="application/json")


def _error(exc: RequestError) -> Response:
    body = error_body(exc.message, exc.error_type, param=exc.param)
    return Response(body, exc.status, media_type="application/json")


class _Engine:
    def __init__(self, settings: LlamaServerSettings, llama: Any, runner: SerialRunner) -> None:
        self.settings = settings
        self.llama = llama
        self.runner = runner

    async def health(self, request: Request) -> Response:
        runner = self.runner
        return _json(
            {
                "status": "ok",
                "running": runner.running,
                "waiting": runner.waiting,
                "sampled_tokens": runner.sampled_tokens,
                "cancelled": runner.cancelled,
            }
        )

    async def models(self, request: Request) -> Response:
        card = {
            "id": self.settings.served_name,
            "object": "model",
            "owned_by": "pilothouse",
            "created": 0,
        }
        return _json({"object": "list", "data": [card]})

    async def embeddings(self, request: Request) -> Response:
        return _error(BadRequest("this llama.cpp engine serves generation only, not embeddings"))

    async def chat(self, request: Request) -> Response:
        return await self._generate(request, chat=True)

    async def completions(self, request: Request) -> Response:
        return await self._generate(request, chat=False)

    async def _generate(self, request: Request, *, chat: bool) -> Response:
        try:
            doc = await self._parse(request, "messages" if chat else "prompt")
            plan = tool_plan(doc) if chat else None
            messages = model_messages(doc["messages"], plan) if chat else None
        except RequestError as exc:
            return _error(exc)
        count = TokenCount(eos_token=self.llama.token_eos())
        kwargs = self._kwargs(doc, count)
        key = conversation_key(doc["messages"]) if plan is not None else b""
        if chat:
            kwargs["messages"] = messages
            if plan is not None:
                kwargs["grammar"] = grammar(plan)
            call = self.llama.create_chat_completion
        else:
            kwargs["prompt"] = doc["prompt"]
            call = self.llama.create_completion
        if doc.get("stream"):
            usage = bool((doc.get("stream_options") or {}).get("include_usage"))
            chunks = self.runner.stream(lambda: call(stream=True, **kwargs), count)
            if plan is not None:
                chunks = tool_call_chunks(chunks, key)
            return _ClosingStream(self._sse(chunks, count, usage, chat))
        watcher = asyncio.ensure_future(_cancel_on_disconnect(request, count))
        try:
            result = await self.runner.run(lambda: call(stream=False, **kwargs), count)
        finally:
            watcher.cancel()
        result["model"] = self.settings.served_name
        if plan is not None:
            as_tool_call(result["choices"][0], key)
        return _json(result)

    async def _parse(self, request: Request, prompt_field: str) -> dict[str, Any]:
        try:
            doc = orjson.loads(await request.body())
        except orjson.JSONDecodeError as exc:
            raise BadRequest(f"request body is not valid JSON: {exc}") from exc
        if not isinstance(doc, dict):
            raise BadRequest("request body must be a JSON object")
        if doc.get("model") not in (None, self.settings.served_name):
            raise ModelNotFound(f"model '{doc.get('model')}' is not served here", param="model")
        if prompt_field not in doc:
            raise BadRequest(f"missing required field '{prompt_field}'", param=prompt_field)
        return doc

    def _kwargs(self, doc: dict[str, Any], count: TokenCount) -> dict[str, Any]:
        from llama_cpp import LogitsProcessorList

        max_tokens = doc.get("max_tokens") or doc.get("max_completion_tokens")
        kwargs: dict[str, Any] = {k: doc[k] for k in _SAMPLING_KEYS if doc.get(k) is not None}
        kwargs["max_tokens"] = max_tokens or self.settings.default_max_tokens
        kwargs["logits_processor"] = LogitsProcessorList([count.on_logits])
        return kwargs

    async def _sse(
        self,
        chunks: AsyncGenerator[dict[str, Any], None],
        count: TokenCount,
        usage: bool,
        chat: bool,
    ) -> AsyncGenerator[bytes, None]:
        finish: str | None = None
        chunk_id, created = f"cmpl-{uuid.uuid4().hex}", int(time.time())
        async with contextlib.aclosing(chunks):  # closing this generator closes ``chunks``
            async for chunk in chunks:
                chunk["model"] = self.settings.served_name
                chunk_id, created = chunk.get("id", chunk_id), chunk.get("created", created)
                for choice in chunk.get("choices", ()):
                    finish = choice.get("finish_reason") or finish
                yield b"data: " + orjson.dumps(chunk) + b"\n\n"
        if usage:
            completion = count.completion_tokens(finish)
            yield (
                b"data: "
                + orjson.dumps(
                    {
                        "id": chunk_id,
                        "object": "chat.completion.chunk" if chat else "text_completion",
                        "created": created,
                        "model": self.settings.served_name,
                        "choices": [],
                        "usage": {
                            "prompt_tokens": count.prompt_tokens,
                            "completion_tokens": completion,
                            "total_tokens": count.prompt_tokens + completion,
                        },
                    }
                )
                + b"\n\n"
            )
        yield b"data: [DONE]\n\n"


async def _cancel_on_disconnect(request: Request, count: TokenCount) -> None:
    """Cancel ``count``'s generation when the client closes its connection.

    Once the body is read, the ASGI server's next ``receive`` message is
    ``http.disconnect``, sent when the connection closes.
    """
    while (await request.receive())["type"] != "http.disconnect":
        pass
    count.cancel()


class _ClosingStream(StreamingResponse):
    """An SSE response that closes its chunk generator however the response ends.

    Starlette stops iterating when the client disconnects, but may leave the generator
    suspended until the garbage collector finalises it; closing it here cancels the
    generation at once (:meth:`SerialRunner.stream`).
    """

    def __init__(self, chunks: AsyncGenerator[bytes, None]) -> None:
        super().__init__(chunks, media_type="text/event-stream")
        self._chunks = chunks

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self._chunks.aclose()
