"""A run's ``invoke_agent`` span, and its model and tool calls inside it.

With ``tracing:`` in the fleet, each run (and each sub-agent run, as a child) gets one span,
``invoke_agent {name}`` (:func:`~pilothouse.telemetry.spans.agent_span`'s attributes). It is
not made current for the whole run: a run is an async generator, and a context attached
across its ``yield``\\ s would be detached in another context. Instead each model and tool call
runs with the span current (:class:`TracedClients`), so the model call carries its
``traceparent`` to the gateway (whose ``chat`` span becomes the agent span's child) and the MCP
client injects it into the tool call's ``_meta`` (the tool gateway's ``tools/call`` span
continues it). Without ``tracing:`` nothing here runs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from pilothouse.agents.clients import (
    AgentClients,
    ModelClient,
    ModelReply,
    ToolClient,
    ToolOutcome,
    ToolSpec,
)
from pilothouse.config.agents import AgentSpec

if TYPE_CHECKING:  # opentelemetry: the otel extra, imported only with tracing on
    from opentelemetry.trace import Span

    from pilothouse.telemetry.provider import Tracing


def start_run_span(
    tracing: Tracing, agent: AgentSpec, run_id: str, parent: Span | None = None
) -> Span:
    """``invoke_agent {agent}`` for run ``run_id`` (a child of ``parent``, a sub-agent's)."""
    from opentelemetry import trace
    from opentelemetry.trace import SpanKind

    from pilothouse.telemetry import names

    context = trace.set_span_in_context(parent) if parent is not None else None
    return tracing.tracer.start_span(
        f"{names.INVOKE_AGENT} {agent.name}",
        context=context,
        kind=SpanKind.INTERNAL,
        attributes={
            names.OPERATION: names.INVOKE_AGENT,
            names.AGENT_NAME: agent.name,
            names.CONVERSATION_ID: run_id,
            names.REQUEST_MODEL: agent.model,
        },
    )


def end_run_span(span: Span, status: str) -> None:
    """End the run's span; a run that did not complete carries ``error.type``."""
    from opentelemetry.trace import Status, StatusCode

    if status not in ("completed", "running", "waiting_approval"):
        span.set_attribute("error.type", status)
        span.set_status(Status(StatusCode.ERROR, status))
    span.end()


class _TracedModel:
    def __init__(self, inner: ModelClient, span: Span) -> None:
        self.inner = inner
        self.span = span

    async def complete(
        self,
        messages: Sequence[Mapping[str, Any]],
        tools: Sequence[ToolSpec],
        *,
        max_tokens: int,
        temperature: float,
    ) -> ModelReply:
        from opentelemetry.trace import use_span

        with use_span(self.span, end_on_exit=False):
            return await self.inner.complete(
                messages, tools, max_tokens=max_tokens, temperature=temperature
            )


class _TracedTools:
    def __init__(self, inner: ToolClient, span: Span) -> None:
        self.inner = inner
        self.span = span

    async def list_tools(self) -> list[ToolSpec]:
        from opentelemetry.trace import use_span

        with use_span(self.span, end_on_exit=False):
            return await self.inner.list_tools()

    async def call(self, name: str, arguments: Mapping[str, Any], call_id: str) -> ToolOutcome:
        from opentelemetry.trace import use_span

        with use_span(self.span, end_on_exit=False):
            return await self.inner.call(name, arguments, call_id)


def traced_clients(clients: AgentClients, span: Span) -> AgentClients:
    """``clients`` whose every call runs with the run's span current."""
    return AgentClients(_TracedModel(clients.model, span), _TracedTools(clients.tools, span))
