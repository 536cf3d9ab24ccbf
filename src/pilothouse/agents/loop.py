"""One run of one agent: model → tool calls → observations → … → a final answer.

:class:`RunLoop` drives a run whose record is in a :class:`~pilothouse.agents.journal.Journal`
(new or resumed) within a :class:`~pilothouse.agents.budget.RunBudget`:

1. the tools offered to the model are the tool gateway's ``tools/list`` that the agent's
   allow-list admits, plus ``agent__<name>`` (arguments ``{"task": string}``) per sub-agent;
2. each model call reserves its most (prompt estimate + ``max_output_tokens``, its price,
   one step) and settles to the usage the gateway reported; the step is written with the
   assistant message;
3. each tool call the model asked for takes the index after its model step (the ``i``-th
   call: ``model index + 1 + i``) and the call id ``<run>/<index>``; it is written
   ``intended`` before it is sent and ``done`` with its result after (see :mod:`.tool_step`);
4. the run ends on an answer without tool calls (``completed``), on a budget that would be
   passed (``budget_exceeded``: nothing over it was called), or on an error (``failed``).

A resumed run (interrupted, waiting, or failed) continues from its last written step: done
calls are not made again.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from typing import TYPE_CHECKING, Any

from pilothouse.agents.budget import Resource, RunBudget
from pilothouse.agents.clients import AgentClients, ModelReply, ToolSpec
from pilothouse.agents.journal import Journal, as_step
from pilothouse.agents.ports import Step
from pilothouse.config.agents import AgentSpec
from pilothouse.errors import AgentError, BudgetExceeded
from pilothouse.governance.agent_runs import StepRecord

if TYPE_CHECKING:
    from opentelemetry.trace import Span

    from pilothouse.agents.runtime import AgentRuntime

DELEGATE_PREFIX = "agent__"
FINISHED = ("completed", "budget_exceeded")
"""Statuses a run never leaves. A ``failed`` run (its gateway or tool gateway failed) goes on
from its last step when resumed, like an interrupted one."""
_TEMPLATE_TOKENS = 16
"""Tokens a chat template may add per message (as the gateway's estimate counts them)."""


def estimate_prompt_tokens(messages: list[dict[str, Any]], tools: list[ToolSpec]) -> int:
    """An upper bound of the prompt's tokens: its UTF-8 bytes (byte-level BPE never makes
    more tokens than bytes), the tools' schemas included, plus the template's share."""
    text = json.dumps(messages, ensure_ascii=False) + json.dumps(
        [t.as_openai() for t in tools], ensure_ascii=False
    )
    return len(text.encode()) + _TEMPLATE_TOKENS * len(messages)


class RunLoop:
    """One run (see the module docstring)."""

    def __init__(
        self,
        runtime: AgentRuntime,
        agent: AgentSpec,
        journal: Journal,
        budget: RunBudget,
        clients: AgentClients,
    ) -> None:
        self.runtime = runtime
        self.agent = agent
        self.journal = journal
        self.budget = budget
        self.clients = clients
        self.tools: dict[str, ToolSpec] = {}
        self.waiting = False
        """The run stopped to wait for a person (``wait_for_approval`` off)."""
        self.span: Span | None = None
        """Its ``invoke_agent`` span when tracing (a sub-agent's span is a child of it)."""
        self._segment = runtime.clock()

    @property
    def run_id(self) -> str:
        return self.journal.run.id

    # -- the loop -------------------------------------------------------------------------

    async def steps(self) -> AsyncIterator[Step]:
        from pilothouse.agents.tool_step import ToolSteps

        final = self._final_step()
        if final is not None:
            yield final
            return
        await self.journal.update(status="running", pending_approval=None)
        try:
            self.tools = await self._offer()
            calls = ToolSteps(self)
            while True:
                model = self._last_model_step()
                if model is not None and model.message is not None:
                    requested = model.message.get("tool_calls") or []
                    if not requested:
                        yield await self._finish("completed", model.content)
                        return
                    async for step in calls.run(model, requested):
                        yield step
                    if self.waiting:
                        return
                async for step in self._model_step(self.journal.next_index()):
                    yield step
        except BudgetExceeded as exc:
            yield await self._finish("budget_exceeded", f"stopped: {exc}")
        except AgentError as exc:
            yield await self._finish("failed", str(exc))
        finally:
            await self.save_time()
            await self.journal.flush()

    def _final_step(self) -> Step | None:
        if self.journal.run.status in FINISHED:
            last = max(self.journal.steps, default=None)
            if last is not None and self.journal.steps[last].kind == "final":
                return as_step(self.journal.steps[last])
            index = self.journal.next_index()
            return Step(self.run_id, index, "final", self.agent.name, self.journal.run.output)
        return None

    def _last_model_step(self) -> StepRecord | None:
        models = [s for s in self.journal.steps.values() if s.kind == "model"]
        return max(models, key=lambda s: s.index) if models else None

    async def _offer(self) -> dict[str, ToolSpec]:
        offered: dict[str, ToolSpec] = {}
        if self.agent.tools:
            try:
                listed = await self.clients.tools.list_tools()
            except AgentError:
                raise
            except Exception as exc:  # the SDK's and httpx's errors: the gateway failed
                raise AgentError(f"the tool gateway did not list its tools: {exc}") from exc
            offered = {t.name: t for t in listed if self.agent.allows(t.name)}
        for sub in self.agent.sub_agents:
            spec = self.runtime.agents.get(sub.name)
            name = f"{DELEGATE_PREFIX}{sub.name}"
            description = f"Delegate a task to the agent '{sub.name}'"
            if spec is not None and spec.description:
                description += f": {spec.description}"
            offered[name] = ToolSpec(
                name,
                description,
                {
                    "type": "object",
                    "properties": {"task": {"type": "string", "description": "The task."}},
                    "required": ["task"],
                },
            )
        return offered

    # -- model calls ----------------------------------------------------------------------

    async def _model_step(self, index: int) -> AsyncIterator[Step]:
        agent = self.agent
        messages = self.journal.messages(agent.instructions)
        tools = list(self.tools.values())
        prompt = estimate_prompt_tokens(messages, tools)
        amounts: dict[Resource, float] = {"tokens": prompt + agent.max_output_tokens, "steps": 1}
        price = self.runtime.prices.get(agent.model)
        if price is not None:
            amounts["money_usd"] = self._cost(prompt, agent.max_output_tokens, None)
        self.check_time()
        hold = self.budget.reserve(amounts, f"step {index} model")
        await self.journal.flush()
        started = self.runtime.clock()
        try:
            reply = await self.clients.model.complete(
                messages, tools, max_tokens=agent.max_output_tokens, temperature=agent.temperature
            )
        except AgentError:
            self.budget.settle(hold, {})
            raise
        used = reply.prompt_tokens + reply.completion_tokens
        actual: dict[Resource, float] = {"tokens": used, "steps": 1}
        if price is not None:
            elapsed = self.runtime.clock() - started
            actual["money_usd"] = self._cost(reply.prompt_tokens, reply.completion_tokens, elapsed)
        self.budget.settle(hold, actual)
        await self.journal.flush()
        yield await self.journal.put(
            StepRecord(
                self.run_id,
                index,
                "model",
                agent.model,
                0.0,
                content=reply.content,
                arguments=json.dumps([c.name for c in reply.tool_calls]),
                tokens=used,
                message=_assistant_message(index, reply),
            )
        )
        await self.save_time()

    def _cost(self, prompt: int, completion: int, elapsed_s: float | None) -> float:
        price = self.runtime.prices[self.agent.model]
        cost = (
            prompt * price.prompt_per_million + completion * price.completion_per_million
        ) / 1_000_000
        seconds = price.max_request_s if elapsed_s is None else elapsed_s
        return cost + price.gpu_hour * price.gpus * seconds / 3600

    # -- time and the end -----------------------------------------------------------------

    def active_s(self) -> float:
        return self.journal.run.active_s + (self.runtime.clock() - self._segment)

    async def save_time(self) -> None:
        """Persist the run's active time (called before a wait for a person and at steps)."""
        active = self.active_s()
        self._segment = self.runtime.clock()
        await self.journal.update(active_s=active)

    def resume_time(self) -> None:
        """Count time again after a wait for a person (begun with :meth:`save_time`)."""
        self._segment = self.runtime.clock()

    def check_time(self) -> None:
        limit = self.budget.limits.wall_time_s
        active = self.active_s()
        if limit is not None and active >= limit:
            raise BudgetExceeded(f"run {self.run_id} (wall time)", 0.0, active - limit, "s")

    async def _finish(self, status: str, output: str) -> Step:
        step = await self.journal.put(
            StepRecord(
                self.run_id,
                self.journal.next_index(),
                "final",
                self.agent.name,
                0.0,
                content=output,
            )
        )
        await self.journal.update(status=status, output=output, pending_approval=None)
        return step

    async def mark_waiting(self, approval_id: str) -> None:
        await self.journal.update(status="waiting_approval", pending_approval=approval_id)


def _assistant_message(index: int, reply: ModelReply) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": reply.content or None}
    if reply.tool_calls:
        message["tool_calls"] = [
            {
                "id": call.id or f"call_{index}_{i}",
                "type": "function",
                "function": {"name": call.name, "arguments": call.arguments or "{}"},
            }
            for i, call in enumerate(reply.tool_calls)
        ]
    return message


def tool_message(call_id: str, text: str) -> Mapping[str, Any]:
    return {"role": "tool", "tool_call_id": call_id, "content": text}
