"""A deterministic :class:`~pilothouse.agents.ports.AgentRunner` for tests of what serves
agents (the Responses API, A2A, the CLI): it plays a script of steps, keeps every run, and can
end a run completed, failed, out of budget or waiting for an approval.

    runner = FakeAgentRunner("triage", [ScriptedStep("tool", "crm__lookup", "{...}", "found"),
                                        ScriptedStep("final", "chat", content="Filed #12")])

Each run gets the id ``<name>-run-<n>``; a run started again with its id resumes after its
last step (an approval counts as granted), as the real runtime does.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field

from pilothouse.agents.ports import RunResult, RunStatus, Step, StepKind


@dataclass(frozen=True, slots=True)
class ScriptedStep:
    kind: StepKind
    name: str
    arguments: str = ""
    content: str = ""
    tokens: int = 0


@dataclass(slots=True)
class _Run:
    task: str
    steps: list[Step] = field(default_factory=list)
    result: RunResult | None = None


class FakeAgentRunner:
    """Plays ``script`` for every task. ``status`` ends runs otherwise than ``completed``:
    ``waiting_approval`` stops at the first ``approval`` step (a second ``run`` with the same
    id goes on from there), ``failed`` / ``budget_exceeded`` stop after the script's last
    non-final step with ``reason`` as the output."""

    def __init__(
        self,
        name: str,
        script: Sequence[ScriptedStep],
        *,
        status: RunStatus = "completed",
        reason: str = "",
    ) -> None:
        self._name = name
        self.script = list(script)
        self.status = status
        self.reason = reason
        self.runs: dict[str, _Run] = {}
        self.tasks: list[str] = []

    @property
    def name(self) -> str:
        return self._name

    async def run(self, task: str, *, run_id: str | None = None) -> AsyncIterator[Step]:
        self.tasks.append(task)
        if run_id is None or run_id not in self.runs:
            run_id = run_id or f"{self._name}-run-{len(self.runs) + 1}"
            self.runs[run_id] = _Run(task)
        run = self.runs[run_id]
        resumed = bool(run.steps)
        for index in range(len(run.steps), len(self.script)):
            scripted = self.script[index]
            if scripted.kind == "final" and self.status in ("failed", "budget_exceeded"):
                run.result = self._result(run_id, run, self.status, self.reason)
                return
            step = Step(
                run_id, index, scripted.kind, scripted.name, scripted.content,
                scripted.arguments, scripted.tokens,
            )  # fmt: skip
            run.steps.append(step)
            yield step
            waiting = scripted.kind == "approval" and self.status == "waiting_approval"
            if waiting and not resumed:
                run.result = self._result(run_id, run, "waiting_approval", self.reason)
                return
            if scripted.kind == "final":
                run.result = self._result(run_id, run, "completed", scripted.content)
                return

    def _result(self, run_id: str, run: _Run, status: RunStatus, output: str) -> RunResult:
        return RunResult(
            run_id=run_id,
            status=status,
            output=output,
            steps=sum(1 for s in run.steps if s.kind == "model"),
            tokens=sum(s.tokens for s in run.steps),
            tool_calls=sum(1 for s in run.steps if s.kind == "tool"),
            pending_approval=f"appr-{run_id}" if status == "waiting_approval" else None,
        )

    async def result(self, run_id: str) -> RunResult:
        run = self.runs.get(run_id)
        if run is None:
            return RunResult(run_id=run_id, status="failed", output=f"no run {run_id}")
        return run.result or RunResult(run_id=run_id, status="running")
