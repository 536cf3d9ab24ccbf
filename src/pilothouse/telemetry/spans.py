"""GenAI spans beyond the request path: agents (``invoke_agent``) and tool calls.

**Agents.** :func:`agent_span` opens ``invoke_agent {name}`` as the current span for the
duration of a run (or one step of it), so everything the runtime does inside (model calls
through the gateway, tool calls through the tool gateway) lands in one trace::

    with agent_span(tracing, "triage", run_id=run.id, model="chat") as span:
        headers = trace_headers()          # put on the HTTP call to the gateway
        ...                                # MCP client calls inject their own context

With ``tracing`` None it yields None and does nothing. The gateway continues a
``traceparent`` it receives (its ``chat`` span becomes the agent span's child); the MCP SDK
client injects the current context into each request's ``_meta``, which the tool gateway's
SDK server continues.

**Tools.** The MCP SDK's server already emits a span per ``tools/call``, named
``tools/call {tool}`` with ``gen_ai.operation.name=execute_tool`` and ``gen_ai.tool.name``
(once an SDK tracer provider is installed: :func:`~pilothouse.telemetry.provider.start_tracing`
with ``install_global``). The tool gateway does not open a second one: it adds its decision
to that span with :func:`annotate_tool_call`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from pilothouse.telemetry import names
from pilothouse.telemetry.provider import Tracing

_W3C = TraceContextTextMapPropagator()


@contextlib.contextmanager
def agent_span(
    tracing: Tracing | None,
    name: str,
    *,
    agent_id: str | None = None,
    run_id: str | None = None,
    model: str | None = None,
    kind: SpanKind = SpanKind.INTERNAL,
) -> Iterator[Span | None]:
    """``invoke_agent {name}``, current while the block runs; ends with ``error.type`` if
    the block raises. ``run_id`` becomes ``gen_ai.conversation.id``; ``kind`` CLIENT for an
    agent invoked remotely (A2A), INTERNAL for one run in this process (GenAI conventions).
    """
    if tracing is None:
        yield None
        return
    attributes: dict[str, str] = {
        names.OPERATION: names.INVOKE_AGENT,
        names.AGENT_NAME: name,
    }
    if agent_id is not None:
        attributes[names.AGENT_ID] = agent_id
    if run_id is not None:
        attributes[names.CONVERSATION_ID] = run_id
    if model is not None:
        attributes[names.REQUEST_MODEL] = model
    with tracing.tracer.start_as_current_span(
        f"{names.INVOKE_AGENT} {name}",
        kind=kind,
        attributes=attributes,
        record_exception=True,
        set_status_on_exception=False,
    ) as span:
        try:
            yield span
        except BaseException as exc:
            span.set_attribute(names.ERROR_TYPE, type(exc).__qualname__)
            span.set_status(Status(StatusCode.ERROR, str(exc)))
            raise


def trace_headers() -> dict[str, str]:
    """W3C ``traceparent`` (and ``tracestate``) of the current span, for an outgoing HTTP
    request; empty when no span is current (tracing off)."""
    span = trace.get_current_span()
    if not span.get_span_context().is_valid:
        return {}
    carrier: dict[str, str] = {}
    _W3C.inject(carrier)
    return carrier


def annotate_tool_call(
    server: str, tool: str, decision: str, rule: str, approval_id: str | None = None
) -> None:
    """Add the tool gateway's decision to the current (the SDK's ``tools/call``) span.

    ``decision``: ``allow``, ``deny`` or ``pending``; ``rule``: what decided (a Cedar policy
    id, ``pinning``, ``taint``, ``approval``, ``budget``); ``server``: the upstream server.
    """
    span = trace.get_current_span()
    if not span.is_recording():
        return
    span.set_attribute(names.TOOL_SERVER, server)
    span.set_attribute(names.TOOL_DECISION, decision)
    span.set_attribute(names.TOOL_RULE, rule)
    span.set_attribute(names.TOOL_UPSTREAM_NAME, tool)
    if approval_id is not None:
        span.set_attribute(names.TOOL_APPROVAL, approval_id)
    # A denied or pending call answers an error result: the SDK sets error.type=tool_error.
