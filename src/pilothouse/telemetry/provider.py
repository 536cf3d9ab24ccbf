"""The tracer provider of one process, built from its ``tracing:`` spec.

:func:`start_tracing` builds an OpenTelemetry SDK ``TracerProvider`` with a parent-based
ratio sampler, a ``BatchSpanProcessor`` (spans are exported off the request path, in the
SDK's worker thread) and the OTLP exporter of ``spec.protocol``. The provider is the
process's own object, passed explicitly: it is not installed as OpenTelemetry's global
provider unless asked (the tool gateway does, so the MCP SDK's spans go out with ours).
:meth:`Tracing.aclose` flushes what is queued and stops the exporter.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping

from pilothouse.config.tracing import TracingSpec
from pilothouse.errors import ConfigError

try:
    from opentelemetry import trace
    from opentelemetry.context import Context
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import (
        BatchSpanProcessor,
        SimpleSpanProcessor,
        SpanExporter,
    )
    from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
    from opentelemetry.trace import SpanKind, Tracer
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
except ImportError as exc:  # pragma: no cover - the otel extra is missing
    raise ConfigError(
        "tracing: needs OpenTelemetry: pip install 'pilothouse[otel]'", path="tracing"
    ) from exc

from pilothouse.telemetry import names
from pilothouse.telemetry.request import RequestTrace

log = logging.getLogger("pilothouse.telemetry")

_W3C = TraceContextTextMapPropagator()
HeaderLookup = Callable[[str], str | None]


class Tracing:
    """A process's tracer and its provider; what the front doors ask for spans."""

    def __init__(self, spec: TracingSpec, provider: TracerProvider) -> None:
        self.spec = spec
        self.provider = provider
        self.tracer: Tracer = provider.get_tracer("pilothouse")

    def request(
        self,
        path: str,
        model: str,
        header: HeaderLookup,
        *,
        max_tokens: int | None = None,
        request_id: str | None = None,
        public: str | None = None,
    ) -> RequestTrace:
        """Open the span of one model request to OpenAI route ``path``, a child of the
        client's ``traceparent`` when it sent one."""
        parent = _parent(header)
        operation = names.OPERATION_BY_PATH.get(path, names.CHAT)
        attributes: dict[str, str | int] = {
            names.OPERATION: operation,
            names.REQUEST_MODEL: model,
        }
        if max_tokens is not None:
            attributes[names.REQUEST_MAX_TOKENS] = max_tokens
        if request_id is not None:
            attributes[names.REQUEST_ID] = request_id
        if public is not None:
            attributes[names.PUBLIC_MODEL] = public
        span = self.tracer.start_span(f"{operation} {model}", parent, SpanKind.CLIENT, attributes)
        return RequestTrace(span, self.spec.decision_detail)

    def flush(self, timeout_s: float = 5.0) -> bool:
        """Export every finished span now (tests, shutdown)."""
        return self.provider.force_flush(int(timeout_s * 1000))

    def shutdown(self) -> None:
        """Flush and stop the exporter (blocking: see :meth:`aclose`)."""
        self.provider.shutdown()

    async def aclose(self) -> None:
        """:meth:`shutdown` off the event loop (an export may wait on the network)."""
        await asyncio.to_thread(self.shutdown)


def start_tracing(
    spec: TracingSpec,
    component: str,
    *,
    exporter: SpanExporter | None = None,
    install_global: bool = False,
) -> Tracing:
    """A :class:`Tracing` for ``spec``; ``component`` (gateway, epp, toolgateway) becomes the
    ``pilothouse.component`` resource attribute.

    ``exporter`` replaces the OTLP exporter (tests: an in-memory one, exported at once).
    ``install_global`` makes the provider OpenTelemetry's global one, for libraries that
    trace through the global API (the MCP SDK).
    """
    resource = Resource.create(
        {"service.name": spec.service_name, "pilothouse.component": component}
    )
    sampler = ParentBased(TraceIdRatioBased(spec.sample_ratio))
    provider = TracerProvider(resource=resource, sampler=sampler)
    if exporter is not None:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    else:
        provider.add_span_processor(BatchSpanProcessor(_otlp_exporter(spec)))
    if install_global:
        trace.set_tracer_provider(provider)
    log.info(
        "tracing: exporting spans over OTLP %s to %s (sampling %.0f%%)",
        spec.protocol,
        spec.endpoint,
        spec.sample_ratio * 100,
    )
    return Tracing(spec, provider)


def _otlp_exporter(spec: TracingSpec) -> SpanExporter:
    headers: Mapping[str, str] = dict(spec.headers)
    if spec.protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
            OTLPSpanExporter as GrpcExporter,
        )

        endpoint = spec.endpoint
        insecure = not endpoint.startswith("https://")
        return GrpcExporter(endpoint=endpoint, insecure=insecure, headers=dict(headers))
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
        OTLPSpanExporter as HttpExporter,
    )

    return HttpExporter(endpoint=spec.endpoint, headers=headers)


def _parent(header: HeaderLookup) -> Context | None:
    """The caller's trace context from its ``traceparent`` / ``tracestate`` headers."""
    traceparent = header("traceparent")
    if not traceparent:
        return None
    carrier = {"traceparent": traceparent}
    state = header("tracestate")
    if state:
        carrier["tracestate"] = state
    return _W3C.extract(carrier)
