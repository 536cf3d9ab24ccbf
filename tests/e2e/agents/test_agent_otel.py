"""An agent run gives one trace: ``invoke_agent`` → the gateway's ``chat`` spans and the tool
gateway's ``tools/call`` (``execute_tool``) spans, each process exporting to one OTLP
receiver (issue #15). Real processes on loopback: the scripted simulator, the governed
gateway, the tool gateway in front of a logging MCP server, ``pilothouse agent run``."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from pilothouse.testing.otlp_receiver import OtlpReceiver, ReceivedSpan
from tests.e2e.agents.stack import agent_stack

pytestmark = pytest.mark.e2e

SCRIPT = {
    "replies": [
        {"when": {"last_role": "user"},
         "tool_calls": [{"name": "ledger__balance", "arguments": {}}]},
        {"when": {"last_role": "tool"}, "content": "You have 100 USD."},
    ]
}  # fmt: skip
AGENT = {"name": "teller", "model": "sim-model", "team": "research", "tools": ["ledger__*"],
         "budgets": {"tokens": 50_000}, "max_output_tokens": 64}  # fmt: skip


def test_otel_agent_run_is_one_trace_of_invoke_agent_chat_and_execute_tool(
    tmp_path: Path,
) -> None:
    with OtlpReceiver("grpc") as receiver:
        tracing = {"tracing": {"endpoint": receiver.endpoint, "protocol": "grpc"}}
        with agent_stack(tmp_path, SCRIPT, [AGENT], fleet_extra=tracing) as stack:
            done = subprocess.run(
                stack.agent_args("run", "--run-id", "t1", "what is my balance?"),
                capture_output=True, text=True, timeout=180,
            )  # fmt: skip
            assert done.returncode == 0, done.stdout + done.stderr
            agent = receiver.wait_for(lambda s: s.name == "invoke_agent teller", 30)
            chats = _wait_all(receiver, lambda s: s.name == "chat sim-model", 2)
            tool = receiver.wait_for(lambda s: s.attributes.get("gen_ai.tool.name") is not None)
    assert agent.attributes["gen_ai.operation.name"] == "invoke_agent"
    assert agent.attributes["gen_ai.conversation.id"] == "t1"
    assert agent.resource["pilothouse.component"] == "agents"
    for chat in chats:  # the gateway continued the traceparent of the agent's model calls
        assert chat.trace_id == agent.trace_id
        assert chat.parent_span_id == agent.span_id
        assert chat.resource["pilothouse.component"] == "gateway"
    assert tool.trace_id == agent.trace_id
    assert tool.attributes["gen_ai.operation.name"] == "execute_tool"
    assert _ancestors(receiver.spans, tool) >= {agent.span_id}


def _wait_all(
    receiver: OtlpReceiver,
    match: Callable[[ReceivedSpan], bool],
    count: int,
    timeout_s: float = 30.0,
) -> list[ReceivedSpan]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = [s for s in receiver.spans if match(s)]
        if len(found) >= count:
            return found
        time.sleep(0.1)
    raise AssertionError(f"{count} spans expected; got {[s.name for s in receiver.spans]}")


def _ancestors(spans: list[ReceivedSpan], span: ReceivedSpan) -> set[str]:
    by_id = {s.span_id: s for s in spans}
    found: set[str] = set()
    parent = span.parent_span_id
    while parent and parent not in found:
        found.add(parent)
        parent = by_id[parent].parent_span_id if parent in by_id else ""
    return found
