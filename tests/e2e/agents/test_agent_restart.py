"""A run waiting for an approval survives ``kill -9`` of the agent and completes after the
approval, with no tool call executed twice (asserted from the tool server's own log).

Real processes on loopback: the simulator answering from a script, the governed gateway, the
tool gateway in front of a logging MCP server, and ``pilothouse agent run`` / ``runs resume``.
The approval comes from the *agent's* ``approvals`` (the fleet's ``tools:`` has none): the
tool gateway holds the call because the caller is that agent's key.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import openai
import pytest

from pilothouse.governance.agent_runs import RunBook
from pilothouse.governance.store import SqlStore
from tests.e2e.agents.stack import agent_stack, decide, wait_for
from tests.e2e.engine_procs import free_port
from tests.e2e.procs import start_until_ready

pytestmark = pytest.mark.e2e

SCRIPT = {
    "replies": [
        {"when": {"last_role": "user"},
         "tool_calls": [{"name": "ledger__balance", "arguments": {}}]},
        {"when": {"last_role": "tool", "turn": 1},
         "tool_calls": [{"name": "ledger__pay", "arguments": {"to": "bob", "usd": 5}}]},
        {"when": {"last_role": "tool"}, "content": "Paid bob 5 USD."},
    ]
}  # fmt: skip
AGENT = {
    "name": "payer",
    "model": "sim-model",
    "team": "research",
    "tools": ["ledger__*"],
    "approvals": ["ledger__pay"],  # held by the tool gateway for this agent's key
    "budgets": {"tokens": 50_000, "tool_calls": 10, "steps": 10},
    "max_output_tokens": 64,
}


def test_agent_restart_after_kill_9_while_waiting_for_approval(tmp_path: Path) -> None:
    with agent_stack(tmp_path, SCRIPT, [AGENT]) as stack:
        first = stack.start_agent("run", "--run-id", "pay1", "pay bob 5 USD", log="agent-1.log")
        try:
            waiting = wait_for(
                lambda: (r := stack.run("pay1")) and r.status == "waiting_approval" and r,
                "the run to wait for an approval",
            )
        finally:
            first.send_signal(signal.SIGKILL)
            first.wait(30)
        assert first.returncode == -signal.SIGKILL
        assert [c["tool"] for c in stack.tool_calls()] == ["balance"]  # pay is held

        second = stack.start_agent("runs", "resume", "pay1", log="agent-2.log")
        try:
            wait_for(lambda: stack.run("pay1") is not None, "the resumed run")
            decide(stack.store_url, waiting.pending_approval)
            second.wait(120)
        except subprocess.TimeoutExpired:
            second.kill()
            raise
        log = (tmp_path / "agent-2.log").read_text()
        assert second.returncode == 0, log

        calls = stack.tool_calls()
        assert calls == [
            {"tool": "balance", "arguments": {}},
            {"tool": "pay", "arguments": {"to": "bob", "usd": 5}},
        ]
        run = stack.run("pay1")
        assert run is not None
        assert run.status == "completed"
        assert run.output == "Paid bob 5 USD."
        store = SqlStore(stack.store_url)
        try:
            book = RunBook(store)
            steps = book.steps("pay1")
            ledger = book.budget_events("pay1")
        finally:
            store.close()
        assert [(s.kind, s.name, s.state) for s in steps] == [
            ("model", "sim-model", "done"),
            ("tool", "ledger__balance", "done"),
            ("model", "sim-model", "done"),
            ("tool", "ledger__pay", "done"),
            ("model", "sim-model", "done"),
            ("final", "payer", "done"),
        ]
        assert steps[3].approval_id == waiting.pending_approval
        reserved = {(r.hold, r.resource) for r in ledger if r.action == "reserve"}
        settled = {(r.hold, r.resource) for r in ledger if r.action == "settle"}
        assert reserved == settled


def test_agent_ctrl_c_while_waiting_exits_130_and_the_run_resumes(tmp_path: Path) -> None:
    with agent_stack(tmp_path, SCRIPT, [AGENT]) as stack:
        first = stack.start_agent("run", "--run-id", "pay2", "pay bob 5 USD", log="agent-1.log")
        try:
            waiting = wait_for(
                lambda: (r := stack.run("pay2")) and r.status == "waiting_approval" and r,
                "the run to wait for an approval",
            )
            first.send_signal(signal.SIGINT)
            assert first.wait(30) == 130
        finally:
            if first.poll() is None:
                first.kill()
        out = (tmp_path / "agent-1.log").read_text()
        assert "pilothouse agent runs resume pay2" in out
        assert "Traceback" not in out
        run = stack.run("pay2")
        assert run is not None
        assert run.status == "waiting_approval"
        decide(stack.store_url, waiting.pending_approval)
        resumed = subprocess.run(
            stack.agent_args("runs", "resume", "pay2"), capture_output=True, text=True, timeout=120
        )
        assert resumed.returncode == 0, resumed.stdout + resumed.stderr
        assert [c["tool"] for c in stack.tool_calls()] == ["balance", "pay"]


def test_agent_restart_of_the_served_agent_after_kill_9(tmp_path: Path) -> None:
    """The same through ``pilothouse agent serve``: the Responses API answers ``incomplete``
    with the run id and the approval it waits for; the service is killed with SIGKILL; after
    the approval, ``agent runs resume`` completes the run, every tool call executed once."""
    with agent_stack(tmp_path, SCRIPT, [AGENT]) as stack:
        store = SqlStore(stack.store_url)
        caller, _ = store.create_key("research", "caller")
        store.close()
        port = free_port()
        args = [sys.executable, "-m", "pilothouse", "agent", "serve", "-f", str(stack.fleet),
                "--port", str(port), "--gateway-url", stack.gateway,
                "--toolgateway-url", stack.tools]  # fmt: skip
        serve, url = start_until_ready(args[3:], tmp_path / "serve.log", timeout_s=120)
        try:
            with openai.OpenAI(base_url=url + "/v1", api_key=caller, timeout=120) as client:
                response = client.responses.create(model="payer", input="pay bob 5 USD")
        finally:
            serve.send_signal(signal.SIGKILL)
            serve.wait(30)
            if serve.stdout is not None:
                serve.stdout.close()
        assert response.status == "incomplete"
        assert response.metadata is not None
        run_id, approval = response.metadata["run_id"], response.metadata["approval_id"]
        assert [c["tool"] for c in stack.tool_calls()] == ["balance"]  # pay is held

        decide(stack.store_url, approval)
        resumed = subprocess.run(
            stack.agent_args("runs", "resume", run_id), capture_output=True, text=True, timeout=120
        )
        assert resumed.returncode == 0, resumed.stdout + resumed.stderr
        assert stack.tool_calls() == [
            {"tool": "balance", "arguments": {}},
            {"tool": "pay", "arguments": {"to": "bob", "usd": 5}},
        ]
        run = stack.run(run_id)
        assert run is not None
        assert run.status == "completed"
