"""One ext_proc stream is one HTTP request through Envoy: the picker's per-stream state machine.

FULL_DUPLEX_STREAMED flow (GAIE endpoint picker protocol, proposal 004)::

    REQUEST    request_headers          record them; answer nothing yet if a body follows
               request_body* (eos)      buffer (capped), then parse and route through the
                                        shared pipeline (hold while the pool is at zero,
                                        queue under flow control, split traffic, schedule)
                                        and answer: headers (destination + Content-Length)
                                        and metadata, then the (possibly rewritten) body
                                        back in chunks of at most 62,000 bytes
    FORWARDED  response_headers         follow the served endpoint; tag the response
    RESPONSE   response_body* (eos)     echo every chunk; read usage from the tail
    DONE       immediate reply sent (400, 429 + retry-after, 503), or the response ended

The request's ticket holds one in-flight count from the routing answer until the response
ends or the stream closes, whichever comes first: a stream that Envoy resets (the client
left) gives back its place in a wait queue or its in-flight count at once
(:meth:`Exchange.close` never leaks one).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from enum import Enum, auto
from typing import TYPE_CHECKING

from pilothouse.endpoints.pool import EndpointPool
from pilothouse.engines.registry import engine_kind, is_known
from pilothouse.epp import protocol
from pilothouse.epp.metrics import EppMetrics
from pilothouse.epp.protocol import ProcessingRequest, ProcessingResponse
from pilothouse.errors import (
    BadRequest,
    NoEndpointAvailable,
    PayloadTooLarge,
    PilothouseError,
    RequestError,
    RequestShed,
    SchedulingError,
)
from pilothouse.governance.governor import Credentials, Used
from pilothouse.openai.errors import error_from_exception
from pilothouse.openai.requests import ParsedRequest, Route, parse_request
from pilothouse.openai.sse import (
    json_usage_and_finish,
    keep_tail,
    sse_usage_and_finish,
    usage_counts,
)
from pilothouse.routing import (
    Pick,
    RoutingPipeline,
    Ticket,
    scheduling_request,
    with_fields,
    with_model,
)
from pilothouse.routing.governed import ask_of, governed_fields, used_of
from pilothouse.scheduling.types import SchedulingRequest

if TYPE_CHECKING:  # the OpenTelemetry SDK is imported only when tracing is configured
    from pilothouse.telemetry.provider import Tracing
    from pilothouse.telemetry.request import RequestTrace

_ROUTES = {route.value: route for route in Route}
_MAX_WHOLE_BODY = 1 << 20  # non-streamed answers kept (for their usage) up to this size
_CLIENT_CLOSED = 499  # the status a request the client left is recorded with (as nginx)


class EppProtocolError(PilothouseError):
    """Envoy sent a message the FULL_DUPLEX_STREAMED flow does not allow at this point."""


class Phase(Enum):
    REQUEST = auto()
    FORWARDED = auto()
    RESPONSE = auto()
    DONE = auto()


@dataclass(frozen=True, slots=True)
class PickerContext:
    """What every stream shares: the one request pipeline, the metrics and the pool's key."""

    pipeline: RoutingPipeline
    pool: EndpointPool
    metrics: EppMetrics
    pool_key: str
    max_body_bytes: int = 10 * 1024 * 1024
    fallback: tuple[str, ...] = ()
    """Endpoints answered, in order, while the pool knows no endpoint at all."""
    forward_priority: bool = False
    """Write the request's priority into vLLM's ``priority`` body field for vLLM endpoints
    (``EppPolicy.forward_priority``: their vLLM runs ``--scheduling-policy priority``)."""
    tracing: Tracing | None = None
    """Spans of the picker's requests (``tracing:`` of its policy); None: no tracing work."""


Handler = Callable[["Exchange", ProcessingRequest], Awaitable[list[ProcessingResponse]]]


class Exchange:
    """The state of one request/response pair seen through ext_proc."""

    def __init__(self, ctx: PickerContext) -> None:
        self._ctx = ctx
        self.phase = Phase.REQUEST
        self._started = time.perf_counter()
        self._headers: dict[str, str] = {}
        self._request_id = ""
        self._subset: frozenset[str] | None = None
        self._body = bytearray()
        self.ticket: Ticket | None = None  # counts in flight while its endpoint is set
        self._streaming = False
        self._tail = b""
        self._whole: bytearray | None = bytearray()
        self._first_byte = False
        self._parsed: ParsedRequest | None = None
        self._chunks = 0
        self._status = 200

    @property
    def done(self) -> bool:
        return self.phase is Phase.DONE

    async def handle(self, message: ProcessingRequest) -> list[ProcessingResponse]:
        """The answers to one message from Envoy, in the order they must be sent."""
        kind = message.WhichOneof("request")
        handler = _HANDLERS.get(kind)
        if handler is None:
            raise EppProtocolError(f"unsupported ext_proc message {kind!r}")
        return await handler(self, message)

    def close(self) -> None:
        """The stream ended (normally, cancelled or broken): release what is held.

        A request that reached an engine and never completed (the client left, the stream
        broke) is charged its prompt, as the engine read it: the gateway's rule too.
        """
        ticket = self.ticket
        if ticket is not None:
            if ticket.trace is not None:  # a no-op when the answer or a refusal ended it
                ticket.trace.end(_CLIENT_CLOSED, error_type="cancelled")
            if self.phase in (Phase.FORWARDED, Phase.RESPONSE) and self._parsed is not None:
                used = Used(self._parsed.prompt_tokens, 0, _CLIENT_CLOSED)
                self._ctx.pipeline.charge(ticket, used)
            self._ctx.pipeline.cancelled(ticket)
        self.phase = Phase.DONE

    # -- request path ------------------------------------------------------------------

    async def _on_request_headers(self, message: ProcessingRequest) -> list[ProcessingResponse]:
        self._expect(Phase.REQUEST, "request_headers")
        headers = message.request_headers
        self._headers = protocol.header_map(headers.headers)
        self._request_id = self._headers.get("x-request-id") or uuid.uuid4().hex
        self._subset = protocol.subset_hint(message)  # data planes may send it only here
        if headers.end_of_stream:  # no body (a GET): route now
            return await self._route(message, None, body_end=True)
        return []

    async def _on_request_body(self, message: ProcessingRequest) -> list[ProcessingResponse]:
        self._expect(Phase.REQUEST, "request_body")
        body = message.request_body
        if len(self._body) + len(body.body) > self._ctx.max_body_bytes:
            limit = self._ctx.max_body_bytes
            return self._reject(PayloadTooLarge(f"request body over {limit} bytes"), "too_large")
        self._body += body.body
        if body.end_of_stream:
            return await self._route(message, bytes(self._body), body_end=True)
        return []

    async def _on_request_trailers(self, message: ProcessingRequest) -> list[ProcessingResponse]:
        self._expect(Phase.REQUEST, "request_trailers")
        out = await self._route(message, bytes(self._body), body_end=False)  # trailers end it
        if self.done:
            return out
        return [*out, protocol.trailers_response(request=True)]

    async def _route(
        self, message: ProcessingRequest, body: bytes | None, *, body_end: bool
    ) -> list[ProcessingResponse]:
        started = time.perf_counter()
        try:
            forward = self._open(body)
            if self._ctx.pipeline.governor is not None:
                await self._admit()
            only = protocol.subset_hint(message)
            if only is None:
                only = self._subset
            if only is not None and not only:
                raise NoEndpointAvailable("the data plane's endpoint subset hint is empty")
            assert self.ticket is not None
            pick = await self._pick(self.ticket, only)
        except BadRequest as exc:
            return self._reject(exc, "bad_request")
        except RequestShed as exc:
            return self._reject(exc, "shed")
        except NoEndpointAvailable as exc:
            return self._reject(exc, "no_endpoint")
        except SchedulingError as exc:
            return self._reject(exc, "error")
        except RequestError as exc:  # governance: 401 / 403 / 429 before any engine work
            return self._reject(exc, "refused")
        if body is not None:
            forward = self._with_priority(forward, pick)
        out = self._forward(pick, None if body is None else forward, body_end)
        self._ctx.metrics.decision.observe(time.perf_counter() - started)
        self._ctx.metrics.requests.labels("routed").inc()
        self.phase = Phase.FORWARDED
        return out

    async def _pick(self, ticket: Ticket, only: frozenset[str] | None) -> Pick | str:
        """The pipeline's pick (counted in flight), or the fallback list while the picker
        knows no endpoint at all."""
        ctx = self._ctx
        if ctx.fallback and not ctx.pool.has_model(ctx.pool_key):
            return ",".join(ctx.fallback)
        routed = await ctx.pipeline.route(ticket, only)
        ctx.pipeline.started(ticket, routed.pick)
        return routed.pick

    def _with_priority(self, body: bytes, pick: Pick | str) -> bytes:
        """``body`` with vLLM's ``priority`` (the request's, after admission, in vLLM's
        order) when the policy forwards priorities and the pick is a vLLM endpoint."""
        if not self._ctx.forward_priority or self._parsed is None or isinstance(pick, str):
            return body
        if self.ticket is None or not is_known(pick.endpoint.engine):
            return body
        field = engine_kind(pick.endpoint.engine).request_priority
        if field is None:
            return body
        return with_fields(body, {"priority": field(self.ticket.request.priority)})

    def _forward(
        self, pick: Pick | str, body: bytes | None, body_end: bool
    ) -> list[ProcessingResponse]:
        """The routing answer: headers and metadata first, then the body in chunks."""
        set_headers = {} if isinstance(pick, str) else dict(pick.headers)
        if self.ticket is not None and self.ticket.trace is not None:
            set_headers.update(self.ticket.trace.headers())  # the engine joins the trace
        if body is not None:
            set_headers["content-length"] = str(len(body))
        remove = self._strip(set_headers)
        destination = pick if isinstance(pick, str) else pick.endpoint.address
        out = [protocol.routed_headers(destination, set_headers, remove)]
        if body is not None:
            out += protocol.body_responses(body, body_end, request=True)
        return out

    def _open(self, body: bytes | None) -> bytes:
        """Parse an OpenAI body into the request's ticket; anything else is routed on load
        alone. Returns the body to forward (a split's version written into ``model``)."""
        pipeline = self._ctx.pipeline
        route = _ROUTES.get(self._headers.get(":path", "").split("?", 1)[0])
        if body is None or route is None or self._headers.get(":method", "POST") != "POST":
            request = SchedulingRequest(request_id=self._request_id, model=self._ctx.pool_key)
            self.ticket = pipeline.open(request)
            return body or b""
        parsed = parse_request(route, body)
        fields = governed_fields(pipeline.governor, parsed)
        if fields:
            max_tokens = fields["max_tokens"]
            assert isinstance(max_tokens, int)
            parsed = replace(parsed, body=with_fields(parsed.body, fields), max_tokens=max_tokens)
        self._parsed = parsed
        self._streaming = parsed.stream
        request = scheduling_request(
            parsed,
            self._headers.get,
            self._request_id,
            pipeline.objectives,
            pipeline.trust_priority_header,
        )
        self.ticket = pipeline.open(request, request.session_id)
        tracing = self._ctx.tracing
        if tracing is not None:
            self.ticket.trace = tracing.request(
                route.value, self.ticket.request.model, self._headers.get,
                max_tokens=parsed.max_tokens, request_id=self._request_id,
                public=self.ticket.public_model,
            )  # fmt: skip
        if self.ticket.public_model is None:
            return parsed.body
        version = self.ticket.request.model
        return with_model(parsed.body, version)

    async def _admit(self) -> None:
        """Identity (a key, a JWT, or the payload Envoy's ``jwt_authn`` verified), scope,
        limits and budgets; requests that are not OpenAI calls are only authenticated."""
        pipeline, ticket = self._ctx.pipeline, self.ticket
        governor = pipeline.governor
        assert governor is not None
        assert ticket is not None
        headers = self._headers
        authorization = headers.get("authorization", "")
        bearer = authorization[7:].strip() if authorization[:7].lower() == "bearer " else None
        payload = None
        jwt = governor.spec.jwt
        if jwt is not None and jwt.envoy_payload_header is not None:
            payload = headers.get(jwt.envoy_payload_header.lower())
        forwarded = headers.get("x-forwarded-for", "")
        client = headers.get("x-envoy-external-address") or forwarded.split(",")[0].strip()
        credentials = Credentials(bearer, client or None, payload)
        if self._parsed is None:
            governor.authenticate(credentials)
            return
        await pipeline.admit(ticket, credentials, ask_of(self._parsed, ticket.request))

    def _strip(self, set_headers: dict[str, str]) -> list[str]:
        """Client-supplied system-owned headers (``x-gateway-*``) that we do not overwrite."""
        return [
            name
            for name in self._headers
            if name.startswith(protocol.SYSTEM_PREFIX)
            and name != protocol.DESTINATION
            and name not in set_headers
        ]

    def _reject(self, exc: RequestError | SchedulingError, result: str) -> list[ProcessingResponse]:
        status, body, headers = error_from_exception(exc)
        self._ctx.metrics.requests.labels(result).inc()
        if self.ticket is not None and self.ticket.trace is not None:
            self.ticket.trace.end(status, error_type=f"{status}_{result}")
        self.phase = Phase.DONE
        return [protocol.immediate(status, body, headers, f"pilothouse_{result}")]

    # -- response path -----------------------------------------------------------------

    async def _on_response_headers(self, message: ProcessingRequest) -> list[ProcessingResponse]:
        if self.phase is Phase.REQUEST and not self._headers:
            # A reply a filter before us made (jwt_authn's 401): we never saw its request,
            # and pass the answer through untouched.
            self.phase = Phase.FORWARDED
        self._expect(Phase.FORWARDED, "response_headers")
        headers = protocol.header_map(message.response_headers.headers)
        status = headers.get(":status", "200")
        self._status = int(status) if status.isdigit() else 200
        if "text/event-stream" in headers.get("content-type", ""):
            self._streaming = True
        self._follow(protocol.served_address(message))
        self.phase = Phase.RESPONSE
        ticket = self.ticket
        endpoint = ticket.endpoint if ticket is not None else None
        tags = {protocol.ENDPOINT_HEADER: endpoint.name} if endpoint is not None else {}
        out = [protocol.response_headers(tags)]
        if message.response_headers.end_of_stream:
            self._finish()
        return out

    async def _on_response_body(self, message: ProcessingRequest) -> list[ProcessingResponse]:
        self._expect(Phase.RESPONSE, "response_body")
        body = message.response_body
        chunk = bytes(body.body)
        self._observe(chunk)
        out = protocol.body_responses(chunk, body.end_of_stream, request=False)
        if body.end_of_stream:
            self._finish()
        return out

    async def _on_response_trailers(self, message: ProcessingRequest) -> list[ProcessingResponse]:
        self._expect(Phase.RESPONSE, "response_trailers")
        self._finish()
        return [protocol.trailers_response(request=False)]

    def _follow(self, served: str | None) -> None:
        """Move the in-flight count when a retry landed on another endpoint than the pick."""
        ticket = self.ticket
        if served is None or ticket is None or ticket.endpoint is None:
            return
        if served == ticket.endpoint.address:
            return
        self._ctx.metrics.rerouted.inc()
        pipeline = self._ctx.pipeline
        pipeline.finished(ticket)
        for endpoint in self._ctx.pool.endpoints():
            if endpoint.address == served:
                pipeline.moved(ticket, endpoint)
                return

    def _observe(self, chunk: bytes) -> None:
        if chunk and not self._first_byte:
            self._first_byte = True
            if self.ticket is not None:
                self._ctx.pipeline.first_token(self.ticket)
            self._ctx.metrics.first_byte.observe(time.perf_counter() - self._started)
        self._chunks += 1
        if self._streaming:
            self._tail = keep_tail(self._tail, chunk)
        elif self._whole is not None:
            self._whole += chunk
            if len(self._whole) > _MAX_WHOLE_BODY:
                self._whole = None

    def _finish(self) -> None:
        traced = self.ticket is not None and self.ticket.trace is not None
        finish: tuple[str, ...] = ()  # finish reasons: a span attribute only
        if self._streaming:
            usage, finish = sse_usage_and_finish(self._tail, finish=traced)
        elif self._whole:
            usage, finish = json_usage_and_finish(bytes(self._whole))
        else:
            usage = None
        prompt, completion = usage_counts(usage)
        if self.ticket is not None and self._parsed is not None:
            # Before the answer's last bytes go back to Envoy: the ledger has it first.
            used = used_of(self._parsed, prompt, completion, self._chunks, self._status)
            if self._status < 400:
                self._ctx.pipeline.charge(self.ticket, used)
        if prompt is not None:
            self._ctx.metrics.tokens.labels("prompt").inc(prompt)
        if completion is not None:
            self._ctx.metrics.tokens.labels("completion").inc(completion)
        self._ctx.metrics.duration.observe(time.perf_counter() - self._started)
        if self.ticket is not None:
            if self.ticket.trace is not None:
                self._end_trace(self.ticket.trace, prompt, completion, finish)
            self._ctx.pipeline.finished(self.ticket)
        self.phase = Phase.DONE  # completed: close() charges nothing more
        self.close()

    def _end_trace(
        self,
        trace: RequestTrace,
        prompt: int | None,
        completion: int | None,
        finish: tuple[str, ...],
    ) -> None:
        parsed = self._parsed
        trace.end(
            self._status,
            input_tokens=prompt,
            output_tokens=completion,
            response_model=parsed.model if parsed is not None and self._status < 400 else None,
            attempts=len(self.ticket.tried) if self.ticket is not None else 1,
            finish_reasons=finish,
        )

    def _expect(self, phase: Phase, kind: str) -> None:
        if self.phase is not phase:
            raise EppProtocolError(f"{kind} is not expected in phase {self.phase.name}")


_HANDLERS: dict[str | None, Handler] = {
    "request_headers": Exchange._on_request_headers,
    "request_body": Exchange._on_request_body,
    "request_trailers": Exchange._on_request_trailers,
    "response_headers": Exchange._on_response_headers,
    "response_body": Exchange._on_response_body,
    "response_trailers": Exchange._on_response_trailers,
}
