"""A sub-agent that tries to outspend its parent is stopped at the parent's remaining budget,
end to end: the scripted simulator keeps the sub-agent calling a tool forever; the ledger in
the store shows every reservation and its settlement."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from pilothouse.governance.agent_runs import RunBook
from pilothouse.governance.store import SqlStore
from tests.e2e.agents.stack import agent_stack

pytestmark = pytest.mark.e2e

SCRIPT = {
    "replies": [
        {"when": {"last_role": "user", "tool": "agent__helper"},
         "tool_calls": [{"name": "agent__helper", "arguments": {"task": "check the balance"}}]},
        {"when": {"tool": "ledger__balance"},
         "tool_calls": [{"name": "ledger__balance", "arguments": {}}]},
        {"when": {"last_role": "tool"}, "content": "The helper ran out of budget."},
    ]
}  # fmt: skip
PARENT_TOKENS = 8_000
AGENTS = [
    {"name": "boss", "model": "sim-model", "team": "research",
     "sub_agents": [{"name": "helper", "budget_share": 0.5}],
     "budgets": {"tokens": PARENT_TOKENS, "steps": 50}, "max_output_tokens": 64},
    {"name": "helper", "model": "sim-model", "team": "research", "tools": ["ledger__balance"],
     "budgets": {"tokens": 10_000_000, "steps": 1000, "tool_calls": 1000},
     "max_output_tokens": 64},
]  # fmt: skip


def test_agent_budget_sub_agent_stopped_at_parents_remaining_budget(tmp_path: Path) -> None:
    with agent_stack(tmp_path, SCRIPT, AGENTS) as stack:
        args = stack.agent_args("run", "--agent", "boss", "--run-id", "b1", "delegate it")
        done = subprocess.run(args, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stdout + done.stderr
        store = SqlStore(stack.store_url)
        try:
            book = RunBook(store)
            parent, child = book.get_run("b1"), book.get_run("b1.1")
            ledger = book.budget_events("b1")
        finally:
            store.close()
    assert parent.status == "completed"
    assert parent.output == "The helper ran out of budget."
    assert child.status == "budget_exceeded"
    assert "budget of b1.1 exceeded" in child.output
    first = sum(r.amount for r in ledger if r.run_id == "b1" and r.action == "settle"
                and r.resource == "tokens" and r.ref == "step 0 model")  # fmt: skip
    assert child.limits["tokens"] == pytest.approx(0.5 * (PARENT_TOKENS - first))

    reserves = {(r.hold, r.resource): r for r in ledger if r.action == "reserve"}
    settles = {(r.hold, r.resource): r for r in ledger if r.action == "settle"}
    assert reserves.keys() == settles.keys()
    assert all(ledger.index(reserves[k]) < ledger.index(settles[k]) for k in settles)
    child_tokens = [r for r in ledger if r.run_id == "b1.1" and r.resource == "tokens"]
    assert len(child_tokens) >= 4  # it ran several turns before it was stopped
    spent = sum(r.amount for r in child_tokens if r.action == "settle")
    assert 0 < spent <= child.limits["tokens"]
    total = sum(r.amount for r in settles.values() if r.resource == "tokens")
    assert total <= PARENT_TOKENS
    assert len(stack.tool_calls()) >= 2
