"""One ext_proc stream is one HTTP request through Envoy: the picker's per-stream state machine.

FULL_DUPLEX_STREAMED flow (GAIE endpoint picker protocol, proposal 004)::

    REQUEST    request_headers          record them; answer nothing yet if a body follows
               request_body* (eos)      buffer (capped), then parse, schedule and answer:
                                        headers (destination + Content-Length) and metadata,
                                        then the body back in chunks of at most 62,000 bytes
    FORWARDED  response_headers         follow the served endpoint; tag the response
    RESPONSE   response_body* (eos)     echo every chunk; read usage from the tail
    DONE       immediate reply sent, or the response ended

The picked endpoint holds one in-flight count from the routing answer until the response
ends or the stream closes, whichever comes first (:meth:`Exchange.close` never leaks one).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum, auto

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
from pilothouse.openai.errors import error_from_exception
from pilothouse.openai.requests import Route, parse_request
from pilothouse.openai.sse import json_usage, keep_tail, sse_usage, usage_counts
from pilothouse.routing import Pick, Router, scheduling_request
from pilothouse.scheduling.types import Endpoint, SchedulingRequest

_ROUTES = {route.value: route for route in Route}
_MAX_WHOLE_BODY = 1 << 20  # non-streamed answers kept (for their usage) up to this size


class EppProtocolError(PilothouseError):
    """Envoy sent a message the FULL_DUPLEX_STREAMED flow does not allow at this point."""


class Phase(Enum):
    REQUEST = auto()
    FORWARDED = auto()
    RESPONSE = auto()
    DONE = auto()


@dataclass(frozen=True, slots=True)
class PickerContext:
    """What every stream shares: the one routing path, the metrics and the pool's key."""

    router: Router
    metrics: EppMetrics
    pool_key: str
    max_body_bytes: int = 10 * 1024 * 1024


Handler = Callable[["Exchange", ProcessingRequest], list[ProcessingResponse]]


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
        self._request: SchedulingRequest | None = None
        self.endpoint: Endpoint | None = None  # holds one in-flight count while set
        self._streaming = False
        self._tail = b""
        self._whole: bytearray | None = bytearray()
        self._first_byte = False

    @property
    def done(self) -> bool:
        return self.phase is Phase.DONE

    def handle(self, message: ProcessingRequest) -> list[ProcessingResponse]:
        """The answers to one message from Envoy, in the order they must be sent."""
        kind = message.WhichOneof("request")
        handler = _HANDLERS.get(kind)
        if handler is None:
            raise EppProtocolError(f"unsupported ext_proc message {kind!r}")
        return handler(self, message)

    def close(self) -> None:
        """The stream ended (normally, cancelled or broken): release what is held."""
        self._release()
        self.phase = Phase.DONE

    # -- request path ------------------------------------------------------------------

    def _on_request_headers(self, message: ProcessingRequest) -> list[ProcessingResponse]:
        self._expect(Phase.REQUEST, "request_headers")
        headers = message.request_headers
        self._headers = protocol.header_map(headers.headers)
        self._request_id = self._headers.get("x-request-id") or uuid.uuid4().hex
        self._subset = protocol.subset_hint(message)  # data planes may send it only here
        if headers.end_of_stream:  # no body (a GET): route now
            return self._route(message, None, body_end=True)
        return []

    def _on_request_body(self, message: ProcessingRequest) -> list[ProcessingResponse]:
        self._expect(Phase.REQUEST, "request_body")
        body = message.request_body
        if len(self._body) + len(body.body) > self._ctx.max_body_bytes:
            limit = self._ctx.max_body_bytes
            return self._reject(PayloadTooLarge(f"request body over {limit} bytes"), "too_large")
        self._body += body.body
        if body.end_of_stream:
            return self._route(message, bytes(self._body), body_end=True)
        return []

    def _on_request_trailers(self, message: ProcessingRequest) -> list[ProcessingResponse]:
        self._expect(Phase.REQUEST, "request_trailers")
        out = self._route(message, bytes(self._body), body_end=False)  # trailers end the body
        if self.done:
            return out
        return [*out, protocol.trailers_response(request=True)]

    def _route(
        self, message: ProcessingRequest, body: bytes | None, *, body_end: bool
    ) -> list[ProcessingResponse]:
        started = time.perf_counter()
        try:
            request, forward = self._scheduling_request(body)
            only = protocol.subset_hint(message)
            if only is None:
                only = self._subset
            if only is not None and not only:
                raise NoEndpointAvailable("the data plane's endpoint subset hint is empty")
            pick = self._ctx.router.pick(request, pool_key=self._ctx.pool_key, only=only)
        except BadRequest as exc:
            return self._reject(exc, "bad_request")
        except RequestShed as exc:
            return self._reject(exc, "shed")
        except NoEndpointAvailable as exc:
            return self._reject(exc, "no_endpoint")
        except SchedulingError as exc:
            return self._reject(exc, "error")
        self._hold(pick.endpoint, request, pick.uncached_tokens)
        out = self._forward(pick, None if body is None else forward, body_end)
        self._ctx.metrics.decision.observe(time.perf_counter() - started)
        self._ctx.metrics.requests.labels("routed").inc()
        self.phase = Phase.FORWARDED
        return out

    def _forward(self, pick: Pick, body: bytes | None, body_end: bool) -> list[ProcessingResponse]:
        """The routing answer: headers and metadata first, then the body in chunks."""
        set_headers = dict(pick.headers)
        if body is not None:
            set_headers["content-length"] = str(len(body))
        remove = self._strip(set_headers)
        out = [protocol.routed_headers(pick.endpoint.address, set_headers, remove)]
        if body is not None:
            out += protocol.body_responses(body, body_end, request=True)
        return out

    def _scheduling_request(self, body: bytes | None) -> tuple[SchedulingRequest, bytes]:
        """Parse OpenAI bodies; anything else is routed on load alone, forwarded as is."""
        route = _ROUTES.get(self._headers.get(":path", "").split("?", 1)[0])
        if body is None or route is None or self._headers.get(":method", "POST") != "POST":
            request = SchedulingRequest(request_id=self._request_id, model=self._ctx.pool_key)
            return request, body or b""
        parsed = parse_request(route, body)
        self._streaming = parsed.stream
        return scheduling_request(parsed, self._headers.get, self._request_id), parsed.body

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
        self.phase = Phase.DONE
        return [protocol.immediate(status, body, headers, f"pilothouse_{result}")]

    # -- response path -----------------------------------------------------------------

    def _on_response_headers(self, message: ProcessingRequest) -> list[ProcessingResponse]:
        self._expect(Phase.FORWARDED, "response_headers")
        headers = protocol.header_map(message.response_headers.headers)
        if "text/event-stream" in headers.get("content-type", ""):
            self._streaming = True
        self._follow(protocol.served_address(message))
        self.phase = Phase.RESPONSE
        tags = {protocol.ENDPOINT_HEADER: self.endpoint.name} if self.endpoint else {}
        out = [protocol.response_headers(tags)]
        if message.response_headers.end_of_stream:
            self._finish()
        return out

    def _on_response_body(self, message: ProcessingRequest) -> list[ProcessingResponse]:
        self._expect(Phase.RESPONSE, "response_body")
        body = message.response_body
        chunk = bytes(body.body)
        self._observe(chunk)
        out = protocol.body_responses(chunk, body.end_of_stream, request=False)
        if body.end_of_stream:
            self._finish()
        return out

    def _on_response_trailers(self, message: ProcessingRequest) -> list[ProcessingResponse]:
        self._expect(Phase.RESPONSE, "response_trailers")
        self._finish()
        return [protocol.trailers_response(request=False)]

    def _follow(self, served: str | None) -> None:
        """Move the in-flight count when a retry landed on another endpoint than the pick."""
        current, request = self.endpoint, self._request
        if served is None or current is None or request is None or served == current.address:
            return
        self._ctx.metrics.rerouted.inc()
        self._release()
        for endpoint in self._ctx.router.pool.endpoints():
            if endpoint.address == served:
                self._hold(endpoint, request)
                return

    def _observe(self, chunk: bytes) -> None:
        if chunk and not self._first_byte:
            self._first_byte = True
            if self.endpoint is not None and self._request is not None:
                self._ctx.router.first_token(self.endpoint, self._request)
            self._ctx.metrics.first_byte.observe(time.perf_counter() - self._started)
        if self._streaming:
            self._tail = keep_tail(self._tail, chunk)
        elif self._whole is not None:
            self._whole += chunk
            if len(self._whole) > _MAX_WHOLE_BODY:
                self._whole = None

    def _finish(self) -> None:
        if self._streaming:
            usage = sse_usage(self._tail)
        else:
            usage = json_usage(bytes(self._whole)) if self._whole else None
        prompt, completion = usage_counts(usage)
        if prompt is not None:
            self._ctx.metrics.tokens.labels("prompt").inc(prompt)
        if completion is not None:
            self._ctx.metrics.tokens.labels("completion").inc(completion)
        self._ctx.metrics.duration.observe(time.perf_counter() - self._started)
        self.close()

    # -- accounting --------------------------------------------------------------------

    def _hold(
        self, endpoint: Endpoint, request: SchedulingRequest, uncached: int | None = None
    ) -> None:
        self._ctx.router.started(endpoint, request, uncached)
        self.endpoint, self._request = endpoint, request

    def _release(self) -> None:
        if self.endpoint is not None and self._request is not None:
            self._ctx.router.finished(self.endpoint, self._request)
        self.endpoint = None

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
