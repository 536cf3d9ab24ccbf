"""The seam between the agent runtime and what serves it (CLI, ``/v1/responses``, A2A).

A run is a sequence of :class:`Step` records, each persisted before the next begins, ending in
a :class:`RunResult`. Serving code depends on :class:`AgentRunner` only, so the same agent is
driven from ``pilothouse agent run``, the Responses API and an A2A server.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Literal, Protocol

StepKind = Literal["model", "tool", "delegate", "approval", "final"]
"""A model call, a tool call, a call to a sub-agent, a wait for a person, the final answer."""

RunStatus = Literal["running", "waiting_approval", "completed", "failed", "budget_exceeded"]


@dataclass(frozen=True, slots=True)
class Step:
    """One step of a run, as persisted (``index`` counts from 0 within the run)."""

    run_id: str
    index: int
    kind: StepKind
    name: str
    """The model, the federated tool name, or the sub-agent's name."""
    content: str = ""
    """Text the model produced, or a tool's result text."""
    arguments: str = ""
    """The call's JSON arguments (tool and delegate steps)."""
    tokens: int = 0
    """Tokens this step spent (model steps)."""
    state: str = "done"
    """``done``; a tool call about to be sent is ``intended``, one held for a person
    ``pending`` (then ``kind`` is ``approval`` and ``approval_id`` names the approval)."""
    approval_id: str | None = None
    call_id: str = ""
    """A tool call's deterministic id (``<run>/<index>``), the same after a resume."""


@dataclass(frozen=True, slots=True)
class RunResult:
    run_id: str
    status: RunStatus
    output: str = ""
    """The final answer (``completed``) or why the run stopped."""
    steps: int = 0
    tokens: int = 0
    tool_calls: int = 0
    pending_approval: str | None = None
    """The approval id a ``waiting_approval`` run waits for."""
    usage: dict[str, float] = field(default_factory=dict)


class AgentRunner(Protocol):
    """Runs one agent; a ``run_id`` that exists resumes that run where it stopped."""

    @property
    def name(self) -> str: ...

    def run(self, task: str, *, run_id: str | None = None) -> AsyncIterator[Step]:
        """Yield each step as it is persisted; the last is a ``final`` step, unless the run
        stopped to wait for a person (a runner that does not wait in process): then an
        ``approval`` step, and the run's status is ``waiting_approval``."""
        ...

    async def result(self, run_id: str) -> RunResult:
        """Where a run stands (after :meth:`run` ended, or for a run started earlier)."""
        ...
