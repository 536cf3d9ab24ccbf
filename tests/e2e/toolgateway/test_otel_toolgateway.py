"""Tool-call spans: the MCP SDK's ``tools/call`` spans carry the tool gateway's decision,
one per call (no duplicate of our own), in the agent's trace (``invoke_agent``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("opentelemetry.sdk")

from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from pilothouse.config.tracing import TracingSpec
from pilothouse.telemetry.provider import Tracing, start_tracing
from pilothouse.telemetry.spans import agent_span, trace_headers
from tests.e2e.toolgateway.harness import agent, running_gateway
from tests.e2e.toolgateway.test_mcp_endpoint import ScriptedGuard

pytestmark = pytest.mark.e2e

_EXPORTER = InMemorySpanExporter()


@pytest.fixture(scope="module")
def tracing() -> Iterator[Tracing]:
    """The process's global provider, as ``pilothouse toolgateway`` installs it (the SDK's
    spans go through the global API; OpenTelemetry lets a process set it only once)."""
    spec = TracingSpec(endpoint="http://unused:4318/v1/traces")
    if isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
        yield start_tracing(spec, "toolgateway", exporter=_EXPORTER, install_global=True)
    else:  # another module installed one first: add our exporter to it
        pytest.skip("a global tracer provider is already installed in this process")


def _spans(name: str) -> list[ReadableSpan]:
    return [s for s in _EXPORTER.get_finished_spans() if s.name == name]


async def test_otel_tool_calls_carry_the_decision_in_the_agents_trace(
    tmp_path: Path, tracing: Tracing
) -> None:
    _EXPORTER.clear()
    async with running_gateway(tmp_path, ScriptedGuard(), traced=True) as gw:
        with agent_span(tracing, "triage", run_id="run-1", model="m") as root:
            assert root is not None
            assert trace_headers()["traceparent"].split("-")[1] == (
                f"{root.get_span_context().trace_id:032x}"
            )
            async with agent(gw.url, gw.alice) as client:
                denied = await client.call_tool("web__echo", {"text": "x"})
                allowed = await client.call_tool("files__env", {"variable": "HOME"})
    assert denied.is_error
    assert not allowed.is_error
    (agent_root,) = _spans("invoke_agent triage")
    a = dict(agent_root.attributes or {})
    assert a["gen_ai.operation.name"] == "invoke_agent"
    assert a["gen_ai.agent.name"] == "triage"
    assert a["gen_ai.conversation.id"] == "run-1"
    trace_id = agent_root.context.trace_id

    # Exactly one server span per call at the gateway: the SDK's, with our decision on it.
    (deny,) = _spans("tools/call web__echo")
    d = dict(deny.attributes or {})
    assert d["gen_ai.operation.name"] == "execute_tool"
    assert d["gen_ai.tool.name"] == "web__echo"
    assert d["pilothouse.tool.decision"] == "deny"
    assert d["pilothouse.tool.rule"] == "policy7"
    assert d["pilothouse.tool.server"] == "web"
    assert d["error.type"] == "tool_error"  # the SDK's: the agent got an error result
    (allow,) = _spans("tools/call files__env")
    assert dict(allow.attributes or {})["pilothouse.tool.decision"] == "allow"
    assert dict(allow.attributes or {})["pilothouse.tool.upstream_name"] == "env"
    for span in (deny, allow):
        assert span.kind == trace.SpanKind.SERVER
        assert span.context.trace_id == trace_id  # the agent's trace, through _meta
    # The allowed call went on to its upstream (stdio), still in the same trace.
    upstream = [
        s for s in _EXPORTER.get_finished_spans() if s.name.startswith("MCP send tools/call env")
    ]
    assert upstream
    assert all(s.context.trace_id == trace_id for s in upstream)


async def test_otel_untraced_gateway_adds_nothing(tmp_path: Path, tracing: Tracing) -> None:
    _EXPORTER.clear()
    async with running_gateway(tmp_path, ScriptedGuard()) as gw, agent(gw.url, gw.alice) as c:
        await c.call_tool("web__echo", {"text": "x"})
    (span,) = _spans("tools/call web__echo")  # the SDK's own span, as it always emits it
    assert not any(k.startswith("pilothouse.") for k in span.attributes or {})
    with agent_span(None, "x") as nothing:  # tracing off: no span, no work
        assert nothing is None
        assert trace_headers() == {}
