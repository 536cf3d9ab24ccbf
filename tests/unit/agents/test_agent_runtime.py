"""The agent loop with fakes: tools, allow-list, sub-agents, budgets, approvals, resume."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from pilothouse.agents.ports import Step
from pilothouse.agents.runtime import AgentRuntime
from pilothouse.config.agents import AgentSpec
from pilothouse.errors import AgentError
from pilothouse.governance.agent_runs import RunBook
from pilothouse.governance.store import SqlStore
from pilothouse.testing.fake_agent import (
    FakeApprovals,
    FakeModel,
    FakeTools,
    fake_connect,
    text_reply,
    tool_reply,
)


@pytest.fixture
def book(tmp_path: Path) -> Iterator[RunBook]:
    store = SqlStore(f"sqlite:///{tmp_path / 'governance.db'}")
    store.migrate()
    yield RunBook(store)
    store.close()


def _agent(**fields: Any) -> AgentSpec:
    return AgentSpec.model_validate({"name": "triage", "model": "chat", **fields})


def _runtime(
    book: RunBook,
    agent: AgentSpec,
    model: FakeModel | Mapping[str, FakeModel],
    tools: FakeTools | Mapping[str, FakeTools],
    approvals: FakeApprovals | None = None,
    **kwargs: Any,
) -> AgentRuntime:
    return AgentRuntime(
        agent,
        connect=fake_connect(model, tools),
        book=book,
        approvals=approvals or FakeApprovals(),
        poll_s=0.001,
        **kwargs,
    )


async def _steps(runtime: AgentRuntime, task: str, run_id: str | None = None) -> list[Step]:
    return [step async for step in runtime.run(task, run_id=run_id)]


def _read(args: Mapping[str, Any]) -> str:
    return f"contents of {args['path']}"


async def test_agent_loop_calls_a_tool_then_answers(book: RunBook) -> None:
    model = FakeModel([tool_reply("files__read", {"path": "a.txt"}), text_reply("a.txt says hi")])
    tools = FakeTools({"files__read": _read})
    runtime = _runtime(book, _agent(tools=["files__*"], instructions="Be brief."), model, tools)
    steps = await _steps(runtime, "What is in a.txt?", "r1")
    assert [(s.kind, s.name) for s in steps] == [
        ("model", "chat"),
        ("tool", "files__read"),
        ("model", "chat"),
        ("final", "triage"),
    ]
    assert steps[1].content == "contents of a.txt"
    assert steps[1].call_id == "r1/1"
    assert [c.call_id for c in tools.ran] == ["r1/1"]
    second = model.calls[1]
    assert second[0] == {"role": "system", "content": "Be brief."}
    assert second[-1] == {"role": "tool", "tool_call_id": "call_files__read",
                          "content": "contents of a.txt"}  # fmt: skip
    result = await runtime.result("r1")
    assert result.status == "completed"
    assert result.output == "a.txt says hi"
    assert result.steps == 2
    assert result.tool_calls == 1
    assert result.tokens > 0


async def test_agent_only_sees_and_calls_allowed_tools(book: RunBook) -> None:
    seen: list[list[str]] = []

    def first(messages: Any) -> Any:
        return tool_reply("secrets__dump", {})

    model = FakeModel([first, text_reply("ok")])
    tools = FakeTools({"files__read": _read, "secrets__dump": lambda _: "the keys"})
    original = model.complete

    async def complete(messages: Any, offered: Any, **kwargs: Any) -> Any:
        seen.append([t.name for t in offered])
        return await original(messages, offered, **kwargs)

    model.complete = complete  # type: ignore[method-assign]
    runtime = _runtime(book, _agent(tools=["files__read"]), model, tools)
    steps = await _steps(runtime, "dump the secrets")
    assert seen[0] == ["files__read"]
    assert steps[1].content == "error: no tool 'secrets__dump' is offered"
    assert tools.sent == []


async def test_agent_bad_arguments_are_told_to_the_model_not_sent(book: RunBook) -> None:
    from pilothouse.agents.clients import ModelReply, ToolCallRequest

    bad = ModelReply(tool_calls=(ToolCallRequest("c1", "files__read", "{not json"),))
    model = FakeModel([bad, text_reply("sorry")])
    tools = FakeTools({"files__read": _read})
    steps = await _steps(_runtime(book, _agent(tools=["files__*"]), model, tools), "read")
    assert steps[1].content.startswith("error: the arguments are not JSON")
    assert tools.sent == []


async def test_agent_budget_of_tokens_stops_before_the_model_call(book: RunBook) -> None:
    model = FakeModel([text_reply("never")])
    runtime = _runtime(book, _agent(budgets={"tokens": 100}), model, FakeTools({}))
    steps = await _steps(runtime, "hello", "r2")
    assert model.calls == []
    assert steps[-1].kind == "final"
    assert "budget of r2 exceeded" in steps[-1].content
    assert (await runtime.result("r2")).status == "budget_exceeded"


async def test_agent_budget_of_steps_and_tool_calls(book: RunBook) -> None:
    model = FakeModel([tool_reply("files__read", {"path": "x"})], repeat_last=True)
    tools = FakeTools({"files__read": _read})
    agent = _agent(tools=["files__*"], budgets={"tool_calls": 2, "steps": 10})
    runtime = _runtime(book, agent, model, tools)
    await _steps(runtime, "loop", "r3")
    result = await runtime.result("r3")
    assert result.status == "budget_exceeded"
    assert "tool_calls" in result.output
    assert len(tools.ran) == 2
    assert len(model.calls) == 3


async def test_agent_budget_sub_agent_is_stopped_at_its_parents_remaining_budget(
    book: RunBook,
) -> None:
    parent = _agent(
        sub_agents=[{"name": "helper", "budget_share": 0.5}],
        budgets={"tokens": 20_000, "tool_calls": 40},
    )
    helper = AgentSpec.model_validate(
        {
            "name": "helper",
            "model": "chat",
            "tools": ["files__*"],
            "budgets": {"tokens": 10_000_000, "steps": 1000},  # tries to outspend the parent
            "max_output_tokens": 500,
        }
    )
    parent_model = FakeModel(
        [tool_reply("agent__helper", {"task": "read everything"}), text_reply("helper gave up")]
    )
    helper_model = FakeModel([tool_reply("files__read", {"path": "x"})], repeat_last=True)
    tools = FakeTools({"files__read": _read})
    runtime = _runtime(
        book,
        parent,
        {"triage": parent_model, "helper": helper_model},
        tools,
        agents={"helper": helper},
    )
    steps = await _steps(runtime, "delegate", "p1")
    child = book.get_run("p1.1")
    assert child.status == "budget_exceeded"
    assert child.parent_id == "p1"
    parent_left_at_delegation = 20_000 - steps[0].tokens
    assert child.limits["tokens"] == pytest.approx(0.5 * parent_left_at_delegation)
    delegate = next(s for s in steps if s.kind == "delegate" and s.state == "done")
    assert delegate.content.startswith("error: the sub-agent stopped (budget_exceeded)")
    assert book.get_run("p1").status == "completed"

    ledger = book.budget_events("p1")
    reserves = {(r.hold, r.resource): r for r in ledger if r.action == "reserve"}
    settles = {(r.hold, r.resource): r for r in ledger if r.action == "settle"}
    assert reserves
    assert reserves.keys() == settles.keys()
    for key, settle in settles.items():
        assert settle.amount <= reserves[key].amount
        assert ledger.index(reserves[key]) < ledger.index(settle)
    child_tokens = sum(r.amount for r in ledger if r.run_id == "p1.1" and r.action == "settle"
                       and r.resource == "tokens")  # fmt: skip
    assert 0 < child_tokens <= child.limits["tokens"]
    total = sum(r.amount for r in settles.values() if r.resource == "tokens")
    assert total <= 20_000
    # the sub-agent's reservations never passed what it had left
    assert all(
        reserves[k].amount <= child.limits["tokens"]
        for k in reserves
        if k[1] == "tokens" and reserves[k].run_id == "p1.1"
    )


async def test_agent_waits_for_an_approval_and_sends_the_same_call_once(book: RunBook) -> None:
    approvals = FakeApprovals()
    model = FakeModel([tool_reply("bank__pay", {"to": "bob", "usd": 5}), text_reply("paid")])
    tools = FakeTools({"bank__pay": lambda a: f"paid {a['to']}"}, held=["bank__pay"],
                      approvals=approvals)  # fmt: skip
    runtime = _runtime(book, _agent(tools=["bank__*"]), model, tools, approvals,
                       wait_for_approval=False)  # fmt: skip
    steps = await _steps(runtime, "pay bob", "w1")
    assert steps[-1].kind == "approval"
    assert steps[-1].approval_id == "apr_1"
    result = await runtime.result("w1")
    assert result.status == "waiting_approval"
    assert result.pending_approval == "apr_1"
    assert tools.ran == []

    again = await _steps(runtime, "", "w1")  # nobody decided yet: still waiting, not re-sent
    assert again[-1].kind == "approval"
    assert len(tools.sent) == 1

    approvals.decide("apr_1")
    restarted = _runtime(book, _agent(tools=["bank__*"]), model, tools, approvals)
    final = await _steps(restarted, "", "w1")
    assert final[-1].kind == "final"
    assert final[-1].content == "paid"
    assert [(c.name, c.call_id) for c in tools.ran] == [("bank__pay", "w1/1")]
    assert (await restarted.result("w1")).status == "completed"
    assert await _steps(restarted, "", "w1") == [final[-1]]  # done: nothing runs again


async def test_agent_waiting_in_process_resumes_when_approved(book: RunBook) -> None:
    approvals = FakeApprovals()
    model = FakeModel([tool_reply("bank__pay", {"to": "bob"}), text_reply("paid")])
    tools = FakeTools({"bank__pay": lambda a: "ok"}, held=["bank__pay"], approvals=approvals)
    runtime = _runtime(book, _agent(tools=["bank__*"]), model, tools, approvals)
    seen: list[Step] = []
    async for step in runtime.run("pay", run_id="w2"):
        seen.append(step)
        if step.kind == "approval":
            approvals.decide(step.approval_id or "", approve=False)
    assert [s.kind for s in seen] == ["model", "approval", "tool", "model", "final"]
    assert seen[2].content.startswith("error: refused by approval")
    assert tools.ran == []


@pytest.mark.parametrize("idempotent", [False, True])
async def test_agent_restart_after_a_crash_mid_call_never_repeats_a_non_idempotent_call(
    book: RunBook, idempotent: bool
) -> None:
    crash = {"armed": True}

    def send(args: Mapping[str, Any]) -> str:
        if crash["armed"]:
            crash["armed"] = False
            raise asyncio.CancelledError  # the process dies after the tool ran
        return "sent"

    model = FakeModel([tool_reply("mail__send", {"to": "a"}), text_reply("done")])
    tools = FakeTools({"mail__send": send}, idempotent=["mail__send"] if idempotent else [])
    runtime = _runtime(book, _agent(tools=["mail__*"]), model, tools)
    with pytest.raises(asyncio.CancelledError):
        await _steps(runtime, "mail a", "c1")
    assert book.steps("c1")[-1].state == "intended"
    steps = await _steps(runtime, "", "c1")
    tool_step = next(s for s in steps if s.kind == "tool")
    if idempotent:
        assert tool_step.content == "sent"
        assert len(tools.sent) == 2
    else:
        assert "not repeated" in tool_step.content
        assert len(tools.sent) == 1
    assert steps[-1].kind == "final"
    # the reservation the dead process left open was settled in full on resume
    ledger = book.budget_events("c1")
    assert any(r.ref.endswith("(interrupted)") for r in ledger)


async def test_agent_resume_keeps_its_task_and_refuses_another_agent(book: RunBook) -> None:
    model = FakeModel([text_reply("hi")])
    runtime = _runtime(book, _agent(), model, FakeTools({}))
    await _steps(runtime, "hello", "x1")
    again = await _steps(runtime, "go on", "x1")  # finished: its final step, no model call
    assert again[-1].content == "hi"
    assert len(model.calls) == 1
    assert book.get_run("x1").task == "hello"
    other = _runtime(book, _agent(name="other"), model, FakeTools({}))
    with pytest.raises(AgentError, match="not 'other'"):
        await _steps(other, "", "x1")


async def test_agent_budget_of_money_is_priced_and_needs_a_price(book: RunBook) -> None:
    from pilothouse.config.governance import PriceSpec
    from pilothouse.errors import ConfigError

    agent = _agent(budgets={"money_usd": 2.0}, max_output_tokens=100)
    with pytest.raises(ConfigError, match="needs a price"):
        _runtime(book, agent, FakeModel([]), FakeTools({}))
    price = PriceSpec(prompt_per_million=1000.0, completion_per_million=1000.0)
    model = FakeModel([tool_reply("x__y", {})], repeat_last=True)
    runtime = _runtime(book, agent, model, FakeTools({}), prices={"chat": price})
    await _steps(runtime, "spend", "m1")
    result = await runtime.result("m1")
    assert result.status == "budget_exceeded"
    assert "money_usd" in result.output
    assert 0 < result.usage["money_usd"] <= 2.0
    assert len(model.calls) >= 2


async def test_agent_failed_run_resumes_once_the_gateway_is_back(book: RunBook) -> None:
    def down(messages: Any) -> Any:
        raise AgentError("the gateway could not be reached: connection refused")

    tools = FakeTools({"files__read": _read})
    agent = _agent(tools=["files__*"])
    flaky = FakeModel([tool_reply("files__read", {"path": "a"}), down])
    steps = await _steps(_runtime(book, agent, flaky, tools), "read a", "f1")
    assert steps[-1].kind == "final"
    assert "connection refused" in steps[-1].content
    assert book.get_run("f1").status == "failed"
    back = FakeModel([text_reply("a says hi")])
    steps = await _steps(_runtime(book, agent, back, tools), "", "f1")
    assert steps[-1].content == "a says hi"
    assert book.get_run("f1").status == "completed"
    assert len(tools.ran) == 1  # the read before the failure is not made again
    assert back.calls[0][-1]["content"] == "contents of a"


def test_agent_run_lease_is_taken_renewed_refused_and_taken_over(book: RunBook) -> None:
    from pilothouse.governance.agent_runs import RunRecord

    book.create_run(RunRecord("l1", "triage", "task", "running", 0.0, 0.0))
    assert book.take_lease("l1", "a", now=100.0, until=130.0) is None
    assert book.take_lease("l1", "a", now=110.0, until=140.0) is None  # renewed
    assert book.take_lease("l1", "b", now=120.0, until=150.0) == ("a", 140.0)
    assert book.take_lease("l1", "b", now=120.0, until=150.0, replacing="a") is None
    assert book.lease("l1") == ("b", 150.0)
    assert book.take_lease("l1", "c", now=151.0, until=181.0) is None  # b's ran out
    book.drop_lease("l1", "b")  # not b's any more: nothing changes
    assert book.lease("l1") == ("c", 181.0)
    book.drop_lease("l1", "c")
    assert book.lease("l1") is None


async def test_agent_run_driven_elsewhere_is_refused_until_its_lease_ends(
    book: RunBook,
) -> None:
    from pilothouse.errors import RunInProgress

    model = FakeModel([text_reply("first")])
    clock = {"now": 1_000.0}
    runtime = _runtime(book, _agent(), model, FakeTools({}), wall=lambda: clock["now"])
    await _steps(runtime, "hello", "busy")
    assert book.lease("busy") is None  # let go when the run stopped
    # Another host's process drives it now (a live one: its pid means nothing here).
    assert book.take_lease("busy", "elsewhere:1:x", clock["now"], clock["now"] + 30) is None
    with pytest.raises(RunInProgress, match=r"elsewhere:1:x.*ends in 30 s"):
        await _steps(runtime, "", "busy")
    assert len(model.calls) == 1  # nothing was done
    assert book.lease("busy") == ("elsewhere:1:x", clock["now"] + 30)
    clock["now"] += 31  # that process stopped renewing: its lease ran out
    steps = await _steps(runtime, "", "busy")  # finished: its final step, under the lease
    assert steps[-1].content == "first"
    assert book.lease("busy") is None


async def test_agent_run_held_by_a_dead_process_of_this_host_is_taken_over_at_once(
    book: RunBook,
) -> None:
    import socket
    import sys

    child = await asyncio.create_subprocess_exec(sys.executable, "-c", "pass")
    await child.wait()
    dead = f"{socket.gethostname()}:{child.pid}:x"  # a pid that is gone
    model = FakeModel([text_reply("hi")])
    runtime = _runtime(book, _agent(), model, FakeTools({}))
    from pilothouse.governance.agent_runs import RunRecord

    book.create_run(RunRecord("orphan", "triage", "hello", "running", 0.0, 0.0))
    assert book.take_lease("orphan", dead, 0.0, 10**12) is None  # it died holding it
    steps = await _steps(runtime, "", "orphan")
    assert steps[-1].content == "hi"
