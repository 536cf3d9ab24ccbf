"""The gateway's request path: authenticate, parse, route, forward, relay, account.

Written as a raw ASGI endpoint so no framework request objects, validation models or
per-chunk encoding sit on the hot path. Routing is the shared
:class:`~pilothouse.routing.RoutingPipeline` (names, holding, flow control, scheduling,
in-flight accounting); the upstream leg is a :class:`~pilothouse.transport.Transport`.
A failure before the first byte is retried once on another replica; a failure after it
ends the stream with an SSE error event. A client that leaves is noticed at once
(:class:`~pilothouse.gateway.asgi.ClientWatch`): its request leaves the wait queue, or its
upstream connection is closed so the engine stops, and it is counted as status 499.
A replica of a model whose engine honours request priorities (vLLM with
``--scheduling-policy priority``) gets the request's priority in vLLM's ``priority`` body
field (:func:`forwarded_body`).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from functools import partial

import orjson

from pilothouse.engines.registry import engine_kind, is_known
from pilothouse.errors import (
    ModelNotFound,
    NoEndpointAvailable,
    RequestError,
    SchedulingError,
    UpstreamError,
    UpstreamTimeout,
)
from pilothouse.gateway.asgi import (
    ClientWatch,
    Receive,
    Scope,
    Send,
    header_map,
    read_body,
    send_error,
)
from pilothouse.gateway.context import GatewayContext
from pilothouse.gateway.translated import (
    authorization,
    relay_translated_stream,
    relay_translated_whole,
    send_dialect_error,
    translate_request,
)
from pilothouse.gateway.upstream import (
    CLIENT_CLOSED,
    SERVER_CUT,
    Outcome,
    relay_stream,
    relay_whole,
)
from pilothouse.governance.governor import Credentials, Used
from pilothouse.openai.requests import ParsedRequest, Route, parse_request
from pilothouse.openai.translation import Dialect, Translation
from pilothouse.routing import HeaderLookup, Ticket, scheduling_request, with_fields
from pilothouse.routing import Route as Routed
from pilothouse.routing.governed import ask_of, governed_fields, used_of
from pilothouse.scheduling.types import Endpoint
from pilothouse.transport import UpstreamRequest, UpstreamResponse

_RETRYABLE_STATUS = frozenset({500, 502, 503, 504})
_ATTEMPTS = 2
_MAX_REQUEST_ID = 128


class ProxyEndpoint:
    """ASGI app for one POST route: an OpenAI route relayed as it is, or, with a
    ``dialect``, an API served by translation into chat completions
    (:mod:`pilothouse.gateway.translated`) on the same request path."""

    def __init__(self, route: Route, ctx: GatewayContext, dialect: Dialect | None = None) -> None:
        self.route = Route.CHAT if dialect is not None else route
        self.ctx = ctx
        self.dialect = dialect
        self._x_api_key = dialect is not None and dialect.accepts_x_api_key
        self.path = dialect.path if dialect is not None else route.value
        """The route served (what metrics and the access log name)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        headers = header_map(scope)
        request_id = _client_request_id(headers.get(b"x-request-id")) or self.ctx.new_request_id()
        reply_headers = [(b"x-request-id", request_id.encode())]
        watch = ClientWatch(scope, receive, send)
        parsed: ParsedRequest | None = None
        translation: Translation | None = None
        ticket: Ticket | None = None
        outcome = Outcome(status=500)
        try:
            credential = authorization(self.dialect, headers)
            self.ctx.check_api_key(credential, self._x_api_key)
            raw = await read_body(receive, headers, self.ctx.settings.max_body_bytes)
            if self.dialect is None:
                parsed = parse_request(self.route, raw)
            else:
                translation, parsed = translate_request(self.dialect, raw)
            ticket, parsed = self._open(parsed, headers, request_id)
            watch.start()
            if self.ctx.pipeline.governor is not None:
                await self._admit(ticket, parsed, credential, scope)
            outcome = await self._forward(ticket, parsed, translation, watch.send, started)
        except (RequestError, SchedulingError) as exc:
            if self.dialect is None:
                outcome.status = await send_error(watch.send, exc, reply_headers)
            else:
                outcome.status = await send_dialect_error(
                    watch.send, self.dialect, exc, reply_headers
                )
        except asyncio.CancelledError:
            if not watch.left(asyncio.current_task()):
                # Cut by the server (the end of a drain): counted and logged, then let go.
                cut = Outcome(status=SERVER_CUT, cut=True)
                self._account(parsed, ticket, cut, request_id, started)
                raise
            outcome = Outcome(status=CLIENT_CLOSED, client_left=True)
        finally:
            watch.stop()
            if ticket is not None:
                if outcome.client_left and ticket.last_endpoint is not None and parsed:
                    # It reached an engine but never completed (the client left, the stream
                    # broke before its end): charged for its prompt, as the engine read it.
                    self.ctx.pipeline.charge(ticket, Used(parsed.prompt_tokens, 0, outcome.status))
                self.ctx.pipeline.cancelled(ticket)  # a no-op unless something is still held
        self._account(parsed, ticket, outcome, request_id, started)

    async def _admit(
        self, ticket: Ticket, parsed: ParsedRequest, credential: bytes | None, scope: Scope
    ) -> None:
        """Identity, scope, limits and budgets, before the request waits for a replica."""
        bearer = None
        if credential and credential[:7].lower() == b"bearer ":
            bearer = credential[7:].strip().decode("latin-1")
        client = scope.get("client")
        credentials = Credentials(bearer, client[0] if client else None)
        await self.ctx.pipeline.admit(ticket, credentials, ask_of(parsed, ticket.request))

    def _open(
        self, parsed: ParsedRequest, headers: dict[bytes, bytes], request_id: str
    ) -> tuple[Ticket, ParsedRequest]:
        """The request's ticket; a split's public name rewritten to the version picked."""
        pipeline = self.ctx.pipeline
        if not pipeline.serves(parsed.model):
            raise ModelNotFound(
                f"model '{parsed.model}' does not exist; see GET /v1/models", param="model"
            )
        lookup = _lookup(headers)
        request = scheduling_request(
            parsed, lookup, request_id, pipeline.objectives, pipeline.trust_priority_header
        )
        ticket = pipeline.open(request, request.session_id)
        fields = governed_fields(pipeline.governor, parsed)
        if ticket.public_model is not None:
            fields["model"] = ticket.request.model
        if fields:
            model = ticket.request.model if ticket.public_model is not None else parsed.model
            max_tokens = fields.get("max_tokens", parsed.max_tokens)
            assert max_tokens is None or isinstance(max_tokens, int)
            body = with_fields(parsed.body, fields)
            parsed = replace(parsed, model=model, body=body, max_tokens=max_tokens)
        tracing = self.ctx.tracing
        if tracing is not None:
            ticket.trace = tracing.request(
                self.route.value, ticket.request.model, lookup,
                max_tokens=parsed.max_tokens, request_id=request_id, public=ticket.public_model,
            )  # fmt: skip
        return ticket, parsed

    async def _forward(
        self,
        ticket: Ticket,
        parsed: ParsedRequest,
        translation: Translation | None,
        send: Send,
        started: float,
    ) -> Outcome:
        failure: RequestError | None = None
        for _attempt in range(_ATTEMPTS):
            try:
                routed = await self.ctx.pipeline.route(ticket)
            except NoEndpointAvailable:
                if failure is not None:
                    raise failure from None
                raise
            result = await self._attempt(ticket, routed, parsed, translation, send, started)
            if isinstance(result, Outcome):
                return result
            failure = result
            self.ctx.metrics.retries.labels(parsed.model).inc()
        assert failure is not None
        raise failure

    async def _attempt(
        self,
        ticket: Ticket,
        routed: Routed,
        parsed: ParsedRequest,
        translation: Translation | None,
        send: Send,
        started: float,
    ) -> Outcome | RequestError:
        """Relay from the picked replica, or return the error to retry elsewhere (nothing sent)."""
        ctx = self.ctx
        pick = routed.pick
        endpoint = pick.endpoint
        if routed.load is not None:
            try:
                await ctx.loader.ensure_loaded(ctx.upstream(), endpoint, routed.load)
            except UpstreamError as exc:
                ticket.tried.add(endpoint.name)
                return exc
        ctx.pipeline.started(ticket, pick)
        gauge = ctx.metrics.in_flight.labels(endpoint.name)
        gauge.inc()
        try:
            headers = (("x-request-id", ticket.request.request_id), *pick.headers.items())
            if ticket.trace is not None:  # the engine's spans join the request's trace
                headers = (*headers, *ticket.trace.headers().items())
            body = forwarded_body(parsed.body, ticket.request.priority, endpoint, ctx)
            upstream = UpstreamRequest(self.route.value, body, headers)
            try:
                resp = await ctx.upstream_transport().send(endpoint.address, upstream)
            except UpstreamTimeout as exc:
                return UpstreamTimeout(f"replica {endpoint.name} did not answer in time: {exc}")
            except UpstreamError as exc:
                ctx.pool.set_ready(endpoint.name, False)  # passive health: the monitor re-checks
                return UpstreamError(f"replica {endpoint.name} failed: {exc.message}")
            try:
                return await self._relay(ticket, resp, endpoint, parsed, translation, send, started)
            finally:
                await resp.aclose()
        finally:
            gauge.dec()
            ctx.pipeline.finished(ticket)

    async def _relay(
        self,
        ticket: Ticket,
        resp: UpstreamResponse,
        endpoint: Endpoint,
        parsed: ParsedRequest,
        translation: Translation | None,
        send: Send,
        started: float,
    ) -> Outcome | RequestError:
        ctx, lora = self.ctx, ticket.request.lora
        if resp.status == 404 and lora is not None:
            ctx.adapters.discard(endpoint, lora)  # unloaded there since last seen: elsewhere
            return ModelNotFound(
                f"replica {endpoint.name} does not serve adapter '{lora}'", param="model"
            )
        if resp.status in _RETRYABLE_STATUS:
            body = await resp.read()
            return UpstreamError(f"replica {endpoint.name} answered {resp.status}: {body[:200]!r}")
        out_headers = [
            (b"x-request-id", ticket.request.request_id.encode()),
            (b"x-pilothouse-endpoint", endpoint.name.encode()),
        ]
        if ticket.public_model is not None:
            out_headers.append((b"x-pilothouse-model", parsed.model.encode()))
        finish = partial(self._charge, ticket, parsed)
        if parsed.stream and resp.status == 200:
            itl = ctx.metrics.itl.labels(parsed.model).observe
            first = partial(ctx.pipeline.first_token, ticket)
            if translation is not None:
                return await relay_translated_stream(
                    resp, send, out_headers, started, itl, first, translation, finish
                )
            traced = ticket.trace is not None  # finish reasons: a span attribute only
            return await relay_stream(
                resp, send, out_headers, started, itl, first, finish, finish_reasons=traced
            )
        if translation is not None:
            assert self.dialect is not None
            return await relay_translated_whole(
                resp, send, out_headers, self.dialect, translation, finish
            )
        return await relay_whole(resp, send, out_headers, finish)

    def _charge(self, ticket: Ticket, parsed: ParsedRequest, outcome: Outcome) -> None:
        """The answer is complete (its last bytes not sent yet): charge it and write it to
        the ledger. An engine's refusal (4xx/5xx) did no work: nothing is charged."""
        if ticket.grant is None:
            return
        if outcome.status >= 400:
            self.ctx.pipeline.cancelled(ticket)
            return
        used = used_of(
            parsed, outcome.prompt_tokens, outcome.completion_tokens, outcome.chunks, outcome.status
        )
        self.ctx.pipeline.charge(ticket, used)

    def _account(
        self,
        parsed: ParsedRequest | None,
        ticket: Ticket | None,
        outcome: Outcome,
        request_id: str,
        started: float,
    ) -> None:
        metrics = self.ctx.metrics
        served = parsed is not None and ticket is not None and ticket.last_endpoint is not None
        if ticket is not None and ticket.trace is not None:
            _end_trace(ticket, parsed, outcome, served)
        # Only served names become label values: a client cannot grow the series count.
        model = parsed.model if parsed is not None and served else ""
        elapsed = time.perf_counter() - started
        # A stream that broke after its 200 went out is an upstream failure (502) in the
        # metrics; one whose client left is 499.
        status = "502" if outcome.broken else str(outcome.status)
        metrics.requests.labels(model, self.path, status).inc()
        split = ticket.public_model if ticket is not None else None
        if split is not None and parsed is not None:  # versions come from the spec: bounded
            metrics.split_requests.labels(split, parsed.model, status).inc()
        if served:
            metrics.e2e.labels(model).observe(elapsed)
            if outcome.ttft_s is not None:
                metrics.ttft.labels(model).observe(outcome.ttft_s)
            if outcome.prompt_tokens is not None:
                metrics.tokens.labels(model, "prompt").inc(outcome.prompt_tokens)
            if outcome.completion_tokens is not None:
                metrics.tokens.labels(model, "completion").inc(outcome.completion_tokens)
        endpoint = ticket.last_endpoint if ticket is not None else None
        if self.ctx.decisions is not None:  # the web console's ring: one slot
            name = parsed.model if parsed is not None else ""
            self.ctx.decisions.finished(request_id, name, self.path, int(status), started, endpoint)
        if self.ctx.settings.access_log:
            self._log(parsed, endpoint, outcome, request_id, elapsed, split)

    def _log(
        self,
        parsed: ParsedRequest | None,
        endpoint: str | None,
        outcome: Outcome,
        request_id: str,
        elapsed: float,
        split: str | None,
    ) -> None:
        record: dict[str, object] = {
            "request_id": request_id,
            "route": self.path,
            "model": parsed.model if parsed else None,
            "endpoint": endpoint,
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
        if outcome.client_left:
            record["client_left"] = True
        if outcome.cut:
            record["cut_by_shutdown"] = True
        if parsed is not None and self.ctx.settings.log_prompts:
            record["prompt"] = parsed.prompt
        self.ctx.access_log.info(orjson.dumps(record).decode())


def forwarded_body(body: bytes, priority: int, endpoint: Endpoint, ctx: GatewayContext) -> bytes:
    """The body sent to ``endpoint``: with vLLM's ``priority`` field set from the request's
    priority (objective, header or governance grant; mapped to vLLM's order by
    the engine kind's ``request_priority``) when the endpoint's model takes one, else ``body``.

    Always set on those models, also to 0: a ``priority`` the client wrote itself would
    otherwise outrank what its objective or team grant allows."""
    if endpoint.model not in ctx.priority_models or not is_known(endpoint.engine):
        return body
    field = engine_kind(endpoint.engine).request_priority
    return body if field is None else with_fields(body, {"priority": field(priority)})


def _end_trace(
    ticket: Ticket, parsed: ParsedRequest | None, outcome: Outcome, served: bool
) -> None:
    """End the request's span with its usage and outcome."""
    assert ticket.trace is not None
    error = None
    if outcome.client_left:
        error = "cancelled"
    elif outcome.cut:
        error = "server_shutdown"
    elif outcome.broken:
        error = "stream_broken"
    status = 502 if outcome.broken else outcome.status
    answered = served and parsed is not None and status < 400
    ticket.trace.end(
        status,
        input_tokens=outcome.prompt_tokens,
        output_tokens=outcome.completion_tokens,
        response_model=parsed.model if answered and parsed is not None else None,
        ttft_s=outcome.ttft_s,
        error_type=error,
        attempts=len(ticket.tried),
        finish_reasons=outcome.finish_reasons,
    )


def _client_request_id(raw: bytes | None) -> str | None:
    """The client's ``x-request-id`` when it is printable ASCII of at most 128 bytes; any
    other value (non-UTF-8 bytes, control characters) is replaced by our own id."""
    if not raw or len(raw) > _MAX_REQUEST_ID or not raw.isascii():
        return None
    text = raw.decode("ascii")
    return text if text.isprintable() else None


def _lookup(headers: dict[bytes, bytes]) -> HeaderLookup:
    def lookup(name: str) -> str | None:
        value = headers.get(name.encode())
        return value.decode("latin-1") if value is not None else None

    return lookup
