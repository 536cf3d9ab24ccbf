"""A run's durable record, as the loop uses it: steps, the conversation, the budget ledger.

:class:`Journal` wraps the governance store's :class:`~pilothouse.governance.agent_runs.RunBook`
(synchronous: run in a worker thread) with what the loop needs:

- the conversation rebuilt from the steps (the system prompt, the task, then each done
  step's message in index order), so a resumed run sends the model what it sent before;
- the budget ledger written as events arrive, and on resume read back: a reservation
  without its settlement (the process died during that call) is settled *in full*, the
  conservative reading (the call may have spent it all), and written so;
- steps as :class:`~pilothouse.agents.ports.Step` for whoever runs the agent.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

from pilothouse.agents.budget import BudgetEvent
from pilothouse.agents.ports import Step, StepKind
from pilothouse.errors import BadRequest
from pilothouse.governance.agent_runs import (
    BudgetRow,
    RunBook,
    RunRecord,
    StepRecord,
    spent_by_subject,
)

RUN_ID = re.compile(r"^[A-Za-z0-9_-]{1,100}$")
"""A run id given by a user (a sub-agent's run id adds ``.<step>`` to its parent's)."""


def check_run_id(run_id: str) -> str:
    if not RUN_ID.match(run_id):
        raise BadRequest("a run id is 1 to 100 letters, digits, '-' or '_'", param="run_id")
    return run_id


def as_step(record: StepRecord) -> Step:
    kind: StepKind = "approval" if record.state == "pending" else record.kind  # type: ignore[assignment]
    return Step(
        run_id=record.run_id,
        index=record.index,
        kind=kind,
        name=record.name,
        content=record.content,
        arguments=record.arguments,
        tokens=record.tokens,
        state=record.state,
        approval_id=record.approval_id,
        call_id=record.call_id or "",
    )


class Journal:
    """One run's record in the store (see the module docstring)."""

    def __init__(self, book: RunBook, run: RunRecord, wall: Callable[[], float] = time.time):
        self.book = book
        self.run = run
        self.wall = wall
        self.steps: dict[int, StepRecord] = {}
        self._pending_events: list[BudgetRow] = []

    @classmethod
    async def open(
        cls, book: RunBook, run: RunRecord, wall: Callable[[], float] = time.time
    ) -> tuple[Journal, bool]:
        """The journal of ``run``, created in the store unless it exists; and whether it
        existed (a resume)."""
        found = await asyncio.to_thread(book.run, run.id)
        if found is None:
            await asyncio.to_thread(book.create_run, run)
            return cls(book, run, wall), False
        journal = cls(book, found, wall)
        for step in await asyncio.to_thread(book.steps, run.id):
            journal.steps[step.index] = step
        return journal, True

    # -- the conversation -----------------------------------------------------------------

    def messages(self, instructions: str) -> list[dict[str, Any]]:
        messages: list[dict[str, Any]] = []
        if instructions:
            messages.append({"role": "system", "content": instructions})
        messages.append({"role": "user", "content": self.run.task})
        for index in sorted(self.steps):
            step = self.steps[index]
            if step.state == "done" and step.message is not None:
                messages.append(dict(step.message))
        return messages

    def next_index(self) -> int:
        return max(self.steps, default=-1) + 1

    # -- writing --------------------------------------------------------------------------

    async def put(self, step: StepRecord) -> Step:
        step = replace(step, at=self.wall())
        await asyncio.to_thread(self.book.put_step, step)
        self.steps[step.index] = step
        return as_step(step)

    async def update(self, **changes: Any) -> None:
        await asyncio.to_thread(self.book.update_run, self.run.id, self.wall(), **changes)
        self.run = replace(self.run, **changes)

    def record(self, event: BudgetEvent) -> None:
        """A budget event (synchronous: the budget core calls it); written by :meth:`flush`
        before the call it reserved for is made."""
        self._pending_events.append(
            BudgetRow(
                event.run_id,
                event.hold,
                event.action,
                event.resource,
                event.amount,
                event.ref,
                self.wall(),
            )
        )

    def share_ledger(self, parent: Journal) -> None:
        """Write budget events through ``parent``'s buffer (a sub-agent's run: its events
        are recorded by the root's budget and flushed by whichever journal flushes first)."""
        self._pending_events = parent._pending_events

    async def flush(self) -> None:
        rows = list(self._pending_events)
        self._pending_events.clear()
        if rows:
            await asyncio.to_thread(self.book.add_budget_events, rows)

    # -- resuming -------------------------------------------------------------------------

    async def spent(self) -> Mapping[str, Mapping[str, float]]:
        """What each run of this run's tree spent (its ledger), after settling in full the
        reservations a dead process left open."""
        rows = await asyncio.to_thread(self.book.budget_events, self.run.id)
        settled = {(r.hold, r.resource) for r in rows if r.action == "settle"}
        now = self.wall()
        closing = [
            BudgetRow(
                r.run_id, r.hold, "settle", r.resource, r.amount, f"{r.ref} (interrupted)", now
            )
            for r in rows
            if r.action == "reserve" and (r.hold, r.resource) not in settled
        ]
        if closing:
            await asyncio.to_thread(self.book.add_budget_events, closing)
        return spent_by_subject([*rows, *closing])
