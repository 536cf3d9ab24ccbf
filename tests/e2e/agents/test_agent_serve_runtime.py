"""``pilothouse agent serve`` with the real runtime: the official ``openai`` client asks an
agent through ``/v1/responses``; the agent runs a multi-step tool task on the scripted
simulator, through the gateway and the tool gateway with its own key, and every call is in
the tool gateway's audit log and the run's ledger."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from pilothouse.agents.identity import key_file
from pilothouse.governance.agent_runs import RunBook
from pilothouse.governance.keys import digest
from pilothouse.governance.store import SqlStore
from pilothouse.governance.tool_store import ToolStore
from tests.e2e.agents.stack import agent_stack, wait_for
from tests.e2e.engine_procs import free_port

pytestmark = pytest.mark.e2e

SCRIPT = {
    "replies": [
        {"when": {"last_role": "user"},
         "tool_calls": [{"name": "ledger__balance", "arguments": {}}]},
        {"when": {"last_role": "tool", "turn": 1},
         "tool_calls": [{"name": "ledger__pay", "arguments": {"to": "ann", "usd": 3}}]},
        {"when": {"last_role": "tool"}, "content": "Paid ann 3 USD; 97 USD left."},
    ]
}  # fmt: skip
AGENT = {"name": "payer", "model": "sim-model", "team": "research", "tools": ["ledger__*"],
         "budgets": {"tokens": 50_000}, "max_output_tokens": 64}  # fmt: skip


def _healthy(url: str) -> bool:
    try:
        return httpx.get(url + "/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def test_agent_responses_run_the_real_runtime_end_to_end(tmp_path: Path) -> None:
    with agent_stack(tmp_path, SCRIPT, [AGENT]) as stack:
        store = SqlStore(stack.store_url)
        caller, _ = store.create_key("research", "caller")
        store.close()
        port = free_port()
        args = [sys.executable, "-m", "pilothouse", "agent", "serve", "-f", str(stack.fleet),
                "--port", str(port), "--gateway-url", stack.gateway,
                "--toolgateway-url", stack.tools]  # fmt: skip
        with (tmp_path / "serve.log").open("w") as log:
            serve = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, text=True)
        try:
            url = f"http://127.0.0.1:{port}"
            wait_for(lambda: _healthy(url), "agent serve", timeout_s=60)
            with openai.OpenAI(base_url=url + "/v1", api_key=caller, timeout=120) as client:
                response = client.responses.create(model="payer", input="Pay ann 3 USD")
        finally:
            serve.terminate()
            serve.wait(30)
        assert response.status == "completed", (tmp_path / "serve.log").read_text()
        assert response.output_text == "Paid ann 3 USD; 97 USD left."
        assert [c["tool"] for c in stack.tool_calls()] == ["balance", "pay"]

        store = SqlStore(stack.store_url)
        try:
            agent_key = key_file(tmp_path / "state", "payer").read_text().strip()
            record = next(k for k in store.list_keys("research") if k.name == "agent-payer")
            assert record.digest == digest(agent_key)
            audit = ToolStore(store)

            # The audit log is written in batches (governance/audit.py), so the second
            # result may land a moment after the answer: wait for both, not the first.
            def results() -> list[Any] | None:
                found = [r for r in audit.records() if r.kind == "result"]
                return found if len(found) >= 2 else None

            calls = wait_for(results, "both tool results in the audit log")
            runs = RunBook(store).list_runs("payer")
            ledger = RunBook(store).budget_events(runs[0].id)
        finally:
            store.close()
        assert {r.principal for r in calls} == {record.id}  # the agent's own identity
        assert [r.tool for r in calls] == ["ledger__balance", "ledger__pay"]
        assert runs[0].status == "completed"
        reserved = {(r.hold, r.resource) for r in ledger if r.action == "reserve"}
        assert reserved == {(r.hold, r.resource) for r in ledger if r.action == "settle"}
