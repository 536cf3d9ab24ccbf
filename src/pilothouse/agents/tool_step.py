"""The tool calls of one model step, each durable: at most once, and across a wait for a person.

For the ``i``-th call a model step asked for (index ``model + 1 + i``, call id
``<run>/<index>``):

- already ``done`` in the journal: skipped (its result is in the conversation);
- a name not offered to the agent, or arguments that are not a JSON object: the model is
  told so, nothing is sent;
- ``agent__<name>``: a sub-agent's run (id ``<run>.<index>``) with a slice of this run's
  remaining budget (:meth:`AgentRuntime.delegate`); its answer is the observation;
- otherwise one tool call is reserved, the step is written ``intended``, the call sent
  through the tool gateway (with the call id in ``_meta``), and the step written ``done``
  with the result.

**Approvals.** When the tool gateway holds the call for a person it answers "pending
approval <id>" without running it; the step is written ``pending`` with the approval id and
the run ``waiting_approval``. The runtime then reads the approval's status in the store
until a person decided (time spent waiting is not counted against ``wall_time_s``) and sends
the very same call again: the tool gateway lets it through once (approvals are bound to the
session, the tool and the hash of the exact arguments) or refuses it (denied). A run
resumed after a restart does the same from its ``pending`` step.

**Exactly once.** A call written ``intended`` but never ``done`` was sent by a process that
died before the answer was recorded: it may or may not have run. It is sent again only when
its tool says it is idempotent or read-only (MCP annotations ``idempotentHint`` /
``readOnlyHint``); otherwise the model is told it was interrupted, and it is not repeated.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Mapping
from dataclasses import replace
from typing import Any

from pilothouse.agents.journal import as_step
from pilothouse.agents.loop import DELEGATE_PREFIX, RunLoop, tool_message
from pilothouse.agents.ports import Step
from pilothouse.errors import AgentError
from pilothouse.governance.agent_runs import StepRecord

_MAX_DECIDED_PENDING = 3
"""Answers "pending" for an approval the store says was decided, before giving up."""


class ToolSteps:
    """The tool calls of a run's model steps (see the module docstring)."""

    def __init__(self, loop: RunLoop) -> None:
        self.loop = loop
        self.journal = loop.journal

    async def run(
        self, model: StepRecord, requested: list[Mapping[str, Any]]
    ) -> AsyncIterator[Step]:
        for i, call in enumerate(requested):
            index = model.index + 1 + i
            existing = self.journal.steps.get(index)
            if existing is not None and existing.state == "done":
                continue
            function = call.get("function") or {}
            name = str(function.get("name", ""))
            arguments = str(function.get("arguments") or "{}")
            base = StepRecord(
                self.loop.run_id,
                index,
                "tool",
                name,
                0.0,
                arguments=arguments,
                call_id=f"{self.loop.run_id}/{index}",
                message=None,
            )
            reply_to = str(call.get("id") or f"call_{index}")
            if name.startswith(DELEGATE_PREFIX) and name in self.loop.tools:
                steps = self._delegate(replace(base, kind="delegate"), existing, reply_to)
            else:
                steps = self._call(base, existing, reply_to)
            async for step in steps:
                yield step
            if self.loop.waiting:
                return

    async def _done(self, base: StepRecord, reply_to: str, text: str) -> Step:
        return await self.journal.put(
            replace(base, content=text, state="done", message=tool_message(reply_to, text))
        )

    # -- tools ----------------------------------------------------------------------------

    async def _call(
        self, base: StepRecord, existing: StepRecord | None, reply_to: str
    ) -> AsyncIterator[Step]:
        loop = self.loop
        spec = loop.tools.get(base.name)
        if spec is None:
            yield await self._done(base, reply_to, f"error: no tool '{base.name}' is offered")
            return
        arguments = _object(base.arguments)
        if isinstance(arguments, str):
            yield await self._done(base, reply_to, f"error: {arguments}")
            return
        resent = existing is not None and existing.state == "intended"
        if resent and not (spec.idempotent or spec.read_only):
            text = (
                "error: this call was interrupted before its result was recorded; it may "
                "or may not have run, and is not repeated (the tool is not idempotent)"
            )
            yield await self._done(base, reply_to, text)
            return
        approval = existing.approval_id if existing is not None else None
        decided = 0
        while True:
            if approval is not None:
                status = await self._decision(approval)
                if status == "pending":  # not waiting in this process: the run stops here
                    loop.waiting = True
                    await loop.mark_waiting(approval)
                    pending = self.journal.steps.get(base.index)
                    if pending is not None:
                        yield as_step(pending)
                    return
                decided = decided + 1 if status not in (None, "pending") else 0
            loop.check_time()
            hold = loop.budget.reserve({"tool_calls": 1}, f"step {base.index} {base.name}")
            await self.journal.put(replace(base, state="intended", approval_id=approval))
            await self.journal.flush()
            try:
                outcome = await loop.clients.tools.call(base.name, arguments, base.call_id or "")
            except AgentError:
                loop.budget.settle(hold, {"tool_calls": 1})  # it may have run: counted
                raise
            if outcome.approval_id is None:
                loop.budget.settle(hold, {"tool_calls": 1})
                await self.journal.flush()
                if approval is not None:
                    await self.journal.update(status="running", pending_approval=None)
                text = f"error: {outcome.text}" if outcome.is_error else outcome.text
                yield await self._done(replace(base, approval_id=approval), reply_to, text)
                return
            loop.budget.settle(hold, {})  # held for a person: it did not run
            await self.journal.flush()
            if decided >= _MAX_DECIDED_PENDING:
                raise AgentError(
                    f"approval {outcome.approval_id} was decided, yet the tool gateway still "
                    f"holds {base.name}"
                )
            approval = outcome.approval_id
            step = await self.journal.put(
                replace(base, state="pending", approval_id=approval, content=outcome.text)
            )
            await loop.mark_waiting(approval)
            yield step

    async def _decision(self, approval_id: str) -> str | None:
        """The approval's status once a person decided (waiting for it when the runtime
        waits); ``pending`` when it does not wait and nobody decided yet. None: the store
        does not know it (another store): the call itself is the poll."""
        runtime = self.loop.runtime
        if not runtime.wait_for_approval:
            return await runtime.approvals.status(approval_id)
        await self.loop.save_time()
        try:
            while True:
                status = await runtime.approvals.status(approval_id)
                if status != "pending":
                    if status is None:
                        await asyncio.sleep(runtime.poll_s)
                    return status
                await asyncio.sleep(runtime.poll_s)
        finally:
            self.loop.resume_time()

    # -- sub-agents -----------------------------------------------------------------------

    async def _delegate(
        self, base: StepRecord, existing: StepRecord | None, reply_to: str
    ) -> AsyncIterator[Step]:
        loop = self.loop
        name = base.name.removeprefix(DELEGATE_PREFIX)
        sub = next((s for s in loop.agent.sub_agents if s.name == name), None)
        spec = loop.runtime.agents.get(name)
        arguments = _object(base.arguments)
        task = arguments.get("task") if isinstance(arguments, dict) else None
        if sub is None or spec is None:
            yield await self._done(base, reply_to, f"error: no agent '{name}' to delegate to")
            return
        if not isinstance(task, str) or not task.strip():
            yield await self._done(base, reply_to, 'error: give {"task": "..."} as a string')
            return
        child_id = f"{loop.run_id}.{base.index}"
        base = replace(base, call_id=child_id)
        if existing is None:
            yield await self.journal.put(replace(base, state="intended"))
        async for step in loop.runtime.delegate(loop, spec, sub.budget_share, child_id, task):
            yield step
        child = await asyncio.to_thread(self.journal.book.get_run, child_id)
        if child.status == "waiting_approval" and child.pending_approval is not None:
            loop.waiting = True
            await loop.mark_waiting(child.pending_approval)
            return
        if child.status == "completed":
            text = child.output
        else:
            text = f"error: the sub-agent stopped ({child.status}): {child.output}"
        yield await self._done(base, reply_to, text)


def _object(arguments: str) -> dict[str, Any] | str:
    """The call's arguments as a JSON object, or why they are not one."""
    try:
        value = json.loads(arguments or "{}")
    except json.JSONDecodeError as exc:
        return f"the arguments are not JSON ({exc.msg}); give a JSON object"
    if not isinstance(value, dict):
        return "the arguments must be a JSON object"
    return value
