"""The request path: authenticate, parse, schedule, forward, relay, account.

Written as a raw ASGI endpoint so no framework request objects, validation models or
per-chunk encoding sit on the hot path. A failure before the first byte is retried once on
another replica; a failure after it ends the stream with an SSE error event.

Two kinds of names resolve to something else before scheduling: a traffic split's public
name becomes one of its versions (the body's ``model`` rewritten, see
:mod:`~pilothouse.gateway.traffic`), and a LoRA adapter's name is scheduled over its base
model's replicas that hold it, loading it first where none does
(:mod:`~pilothouse.gateway.adapters`).
"""

from __future__ import annotations

import time
from dataclasses import replace
from functools import partial

import aiohttp
import orjson

from pilothouse.errors import (
    ModelNotFound,
    NoEndpointAvailable,
    RequestError,
    SchedulingError,
    UpstreamError,
    UpstreamTimeout,
)
from pilothouse.gateway.adapters import DeclaredAdapter
from pilothouse.gateway.asgi import Receive, Scope, Send, header_map, read_body, send_error
from pilothouse.gateway.context import GatewayContext
from pilothouse.gateway.traffic import with_model
from pilothouse.gateway.upstream import Outcome, open_upstream, relay_stream, relay_whole
from pilothouse.openai.requests import ParsedRequest, Route, parse_request
from pilothouse.routing import HeaderLookup, Pick, scheduling_request
from pilothouse.scheduling.types import Endpoint, SchedulingRequest

_RETRYABLE_STATUS = frozenset({500, 502, 503, 504})


class ProxyEndpoint:
    """ASGI app for one OpenAI POST route."""

    def __init__(self, route: Route, ctx: GatewayContext) -> None:
        self.route = route
        self.ctx = ctx

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        headers = header_map(scope)
        request_id = headers.get(b"x-request-id", b"").decode() or self.ctx.new_request_id()
        reply_headers = [(b"x-request-id", request_id.encode())]
        parsed: ParsedRequest | None = None
        split: str | None = None
        outcome = Outcome(status=500)
        endpoint: Endpoint | None = None
        try:
            self.ctx.check_api_key(headers.get(b"authorization"))
            raw = await read_body(receive, headers, self.ctx.settings.max_body_bytes)
            parsed = parse_request(self.route, raw)
            if self.ctx.traffic.is_public(parsed.model):
                split, parsed = parsed.model, self._version(parsed, headers)
            if not self.ctx.serves(parsed.model):
                raise ModelNotFound(
                    f"model '{parsed.model}' does not exist; see GET /v1/models", param="model"
                )
            endpoint, outcome = await self._forward(
                parsed, headers, request_id, send, started, split
            )
        except (RequestError, SchedulingError) as exc:
            outcome.status = await send_error(send, exc, reply_headers)
        self._account(parsed, endpoint, outcome, request_id, started, split)

    def _version(self, parsed: ParsedRequest, headers: dict[bytes, bytes]) -> ParsedRequest:
        """``parsed`` sent to the version its split picks (sticky per session)."""
        session = headers.get(b"x-session-id", b"").decode("latin-1") or parsed.user
        version = self.ctx.traffic.choose(parsed.model, session)
        return replace(parsed, model=version, body=with_model(parsed.body, version))

    async def _forward(
        self,
        parsed: ParsedRequest,
        headers: dict[bytes, bytes],
        request_id: str,
        send: Send,
        started: float,
        split: str | None = None,
    ) -> tuple[Endpoint, Outcome]:
        objectives = self.ctx.settings.flow_control.objectives
        request = scheduling_request(parsed, _lookup(headers), request_id, objectives)
        if not self.ctx.pool.has_model(parsed.model):
            base = self.ctx.adapters.base_of(parsed.model)
            if base is not None:  # a LoRA adapter: its base model's replicas serve it
                request = replace(request, model=base, lora=parsed.model)
        await self.ctx.holding.wait_for_replica(request)  # waits while a replica starts
        await self.ctx.admission.admit(request)  # waits while every replica is saturated
        tried: set[str] = set()
        failure: RequestError | None = None
        for _attempt in range(2):
            try:
                pick, load = self._pick(request, frozenset(tried))
            except NoEndpointAvailable:
                if failure is not None:
                    raise failure from None
                raise
            tried.add(pick.endpoint.name)
            result = await self._attempt(pick, request, parsed, send, started, split, load)
            if isinstance(result, Outcome):
                return pick.endpoint, result
            failure = result
            self.ctx.metrics.retries.labels(parsed.model).inc()
        assert failure is not None
        raise failure

    def _pick(
        self, request: SchedulingRequest, tried: frozenset[str]
    ) -> tuple[Pick, DeclaredAdapter | None]:
        """Schedule; an adapter request only among replicas that hold (or may load) it."""
        if request.lora is None:
            return self.ctx.router.pick(request, exclude=tried), None
        candidates = self.ctx.pool.candidates(request.model, tried)
        plan = self.ctx.adapters.plan(request.lora, candidates)
        return self.ctx.router.pick(request, exclude=tried, only=plan.only), plan.load

    async def _attempt(
        self,
        pick: Pick,
        request: SchedulingRequest,
        parsed: ParsedRequest,
        send: Send,
        started: float,
        split: str | None = None,
        load: DeclaredAdapter | None = None,
    ) -> Outcome | RequestError:
        """Relay from the picked replica, or return the error to retry elsewhere (nothing sent)."""
        ctx = self.ctx
        endpoint, request_id = pick.endpoint, request.request_id
        if load is not None:
            try:
                await ctx.adapters.ensure_loaded(ctx.upstream(), endpoint, load)
            except UpstreamError as exc:
                return exc
        url = f"http://{endpoint.address}{self.route.value}"
        ctx.router.started(endpoint, request, pick.uncached_tokens)
        gauge = ctx.metrics.in_flight.labels(endpoint.name)
        gauge.inc()
        try:
            try:
                resp = await open_upstream(
                    ctx.upstream(), url, parsed.body, request_id, pick.headers
                )
            except TimeoutError:
                return UpstreamTimeout(f"replica {endpoint.name} did not answer in time")
            except aiohttp.ClientError as exc:
                ctx.pool.set_ready(endpoint.name, False)  # passive health: the monitor re-checks
                return UpstreamError(f"replica {endpoint.name} failed: {type(exc).__name__}")
            async with resp:
                if resp.status == 404 and request.lora is not None:
                    await resp.read()  # unloaded there since last seen: try elsewhere
                    ctx.adapters.discard(endpoint, request.lora)
                    return ModelNotFound(
                        f"replica {endpoint.name} does not serve adapter '{request.lora}'",
                        param="model",
                    )
                if resp.status in _RETRYABLE_STATUS:
                    body = await resp.read()
                    return UpstreamError(
                        f"replica {endpoint.name} answered {resp.status}: {body[:200]!r}"
                    )
                out_headers = [
                    (b"x-request-id", request_id.encode()),
                    (b"x-pilothouse-endpoint", endpoint.name.encode()),
                ]
                if split is not None:
                    out_headers.append((b"x-pilothouse-model", parsed.model.encode()))
                if parsed.stream and resp.status == 200:
                    itl = ctx.metrics.itl.labels(parsed.model).observe
                    first = partial(ctx.router.first_token, endpoint, request)
                    return await relay_stream(resp, send, out_headers, started, itl, first)
                return await relay_whole(resp, send, out_headers)
        finally:
            gauge.dec()
            ctx.router.finished(endpoint, request)

    def _account(
        self,
        parsed: ParsedRequest | None,
        endpoint: Endpoint | None,
        outcome: Outcome,
        request_id: str,
        started: float,
        split: str | None = None,
    ) -> None:
        metrics = self.ctx.metrics
        # Only served names become label values: a client cannot grow the series count.
        model = parsed.model if parsed is not None and endpoint is not None else ""
        elapsed = time.perf_counter() - started
        metrics.requests.labels(model, self.route.value, str(outcome.status)).inc()
        if split is not None and parsed is not None:  # versions come from the spec: bounded
            metrics.split_requests.labels(split, parsed.model, str(outcome.status)).inc()
        if parsed is not None and endpoint is not None:
            metrics.e2e.labels(model).observe(elapsed)
            if outcome.ttft_s is not None:
                metrics.ttft.labels(model).observe(outcome.ttft_s)
            if outcome.prompt_tokens is not None:
                metrics.tokens.labels(model, "prompt").inc(outcome.prompt_tokens)
            if outcome.completion_tokens is not None:
                metrics.tokens.labels(model, "completion").inc(outcome.completion_tokens)
        if self.ctx.settings.access_log:
            self._log(parsed, endpoint, outcome, request_id, elapsed, split)

    def _log(
        self,
        parsed: ParsedRequest | None,
        endpoint: Endpoint | None,
        outcome: Outcome,
        request_id: str,
        elapsed: float,
        split: str | None,
    ) -> None:
        record: dict[str, object] = {
            "request_id": request_id,
            "route": self.route.value,
            "model": parsed.model if parsed else None,
            "endpoint": endpoint.name if endpoint else None,
            "status": outcome.status,
            "stream": parsed.stream if parsed else None,
            "ttft_s": round(outcome.ttft_s, 6) if outcome.ttft_s is not None else None,
            "latency_s": round(elapsed, 6),
            "tokens_in": outcome.prompt_tokens,
            "tokens_out": outcome.completion_tokens,
        }
        if split is not None:
            record["public_model"] = split
        if outcome.broken:
            record["broken_stream"] = True
        if parsed is not None and self.ctx.settings.log_prompts:
            record["prompt"] = parsed.prompt
        self.ctx.access_log.info(orjson.dumps(record).decode())


def _lookup(headers: dict[bytes, bytes]) -> HeaderLookup:
    def lookup(name: str) -> str | None:
        value = headers.get(name.encode())
        return value.decode("latin-1") if value is not None else None

    return lookup
