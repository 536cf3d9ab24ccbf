"""Each agent as an A2A server, built with the official ``a2a-sdk``: its Agent Card and the
JSON-RPC endpoint, under ``/agents/<name>/``.

The card (``/agents/<name>/.well-known/agent-card.json``) names the agent, its description, a
skill for its task and one per tool pattern it may call (those waiting for a person say so),
the JSON-RPC interface URL, and bearer authentication. A message becomes a task: its text is
the run's task, every intermediate step is a ``working`` status message, the final answer an
artifact and ``completed``; a run stopped by its budget or a failure ends ``failed``; a run
waiting for an approval ends ``input-required``, and a later message on the same task resumes
that run (the runtime skips what already happened).
"""

from __future__ import annotations

from a2a.helpers.proto_helpers import new_task_from_user_message, new_text_part
from a2a.server.agent_execution import AgentExecutor, RequestContext
from a2a.server.events import EventQueue
from a2a.server.request_handlers import DefaultRequestHandler
from a2a.server.routes import create_agent_card_routes, create_jsonrpc_routes
from a2a.server.tasks import InMemoryTaskStore, TaskUpdater
from a2a.types.a2a_pb2 import (
    AgentCapabilities,
    AgentCard,
    AgentInterface,
    AgentSkill,
    HTTPAuthSecurityScheme,
    SecurityRequirement,
    SecurityScheme,
    StringList,
    TaskState,
)
from a2a.utils.constants import AGENT_CARD_WELL_KNOWN_PATH, PROTOCOL_VERSION_CURRENT
from starlette.routing import Route

from pilothouse import __version__
from pilothouse.agents.ports import RunResult
from pilothouse.agents.serving.responses_wire import step_summary
from pilothouse.agents.serving.runs import ServedAgent
from pilothouse.config.agents import AgentSpec
from pilothouse.errors import PilothouseError

TEXT = "text/plain"
BEARER = "bearer"


def agent_base(public_url: str, name: str) -> str:
    """Where an agent's A2A server lives: ``<public url>/agents/<name>``."""
    return f"{public_url.rstrip('/')}/agents/{name}"


def agent_card(spec: AgentSpec, public_url: str) -> AgentCard:
    """The Agent Card of ``spec`` served at ``public_url``."""
    return AgentCard(
        name=spec.name,
        description=spec.description or f"pilothouse agent {spec.name}",
        version=__version__,
        supported_interfaces=[
            AgentInterface(
                url=f"{agent_base(public_url, spec.name)}/",
                protocol_binding="JSONRPC",
                protocol_version=PROTOCOL_VERSION_CURRENT,
            )
        ],
        capabilities=AgentCapabilities(streaming=True, push_notifications=False),
        default_input_modes=[TEXT],
        default_output_modes=[TEXT],
        skills=skills(spec),
        security_schemes={
            BEARER: SecurityScheme(
                http_auth_security_scheme=HTTPAuthSecurityScheme(
                    scheme="Bearer", description="a pilothouse API key the gateway accepts"
                )
            )
        },
        security_requirements=[SecurityRequirement(schemes={BEARER: StringList(list=[])})],
    )


def skills(spec: AgentSpec) -> list[AgentSkill]:
    """The agent's task, then one skill per tool pattern of its allow-list."""
    tags = ["pilothouse", f"model:{spec.model}"]
    out = [
        AgentSkill(
            id=spec.name,
            name=spec.name,
            description=spec.description or (spec.instructions.strip()[:500] or spec.name),
            tags=tags,
            input_modes=[TEXT],
            output_modes=[TEXT],
        )
    ]
    for pattern in spec.tools:
        server = pattern.split("__", 1)[0]
        waits = " (each call waits for a person's approval)" if pattern in spec.approvals else ""
        out.append(
            AgentSkill(
                id=pattern,
                name=pattern,
                description=f"calls {pattern} through the tool gateway{waits}",
                tags=["tool", f"server:{server}"],
            )
        )
    for sub in spec.sub_agents:
        out.append(
            AgentSkill(
                id=f"agent__{sub.name}",
                name=f"agent__{sub.name}",
                description=f"delegates to the agent {sub.name} "
                f"(at most {sub.budget_share:.0%} of the remaining budget)",
                tags=["delegation"],
            )
        )
    return out


class RunnerExecutor(AgentExecutor):
    """Runs the agent for an A2A task (see the module docstring)."""

    def __init__(self, agent: ServedAgent) -> None:
        self.agent = agent
        self._runs: dict[str, str] = {}  # A2A task id -> run id, to resume a waiting run

    async def execute(self, context: RequestContext, event_queue: EventQueue) -> None:
        task = context.current_task
        if task is None:
            if context.message is None:
                raise ValueError("an A2A execution without a message")
            task = new_task_from_user_message(context.message)
            await event_queue.enqueue_event(task)
        updater = TaskUpdater(event_queue, task.id, task.context_id)
        await updater.start_work()
        result = await self._run(context.get_user_input(), task.id, updater)
        if result.status != "waiting_approval":
            self._runs.pop(task.id, None)  # only a waiting run is resumed
        await self._finish(result, updater)

    async def _run(self, text: str, task_id: str, updater: TaskUpdater) -> RunResult:
        run_id = self._runs.get(task_id)
        try:
            async for step in self.agent.runner.run(text, run_id=run_id):
                if run_id is None:
                    run_id = self._runs[task_id] = step.run_id
                if step.kind != "final":
                    message = updater.new_agent_message([new_text_part(step_summary(step))])
                    await updater.update_status(TaskState.TASK_STATE_WORKING, message=message)
            if run_id is None:
                return RunResult(run_id="", status="failed", output="the run produced no step")
            return await self.agent.runner.result(run_id)
        except PilothouseError as exc:
            return RunResult(run_id=run_id or "", status="failed", output=str(exc))

    async def _finish(self, result: RunResult, updater: TaskUpdater) -> None:
        text = result.output or result.status
        message = updater.new_agent_message([new_text_part(text)])
        if result.status == "completed":
            await updater.add_artifact([new_text_part(result.output)], name="answer")
            await updater.complete(message)
        elif result.status == "waiting_approval":
            note = f"waiting for approval {result.pending_approval or ''}".strip()
            wait = updater.new_agent_message([new_text_part(f"{note}: {text}")])
            await updater.requires_input(wait)
        else:
            await updater.failed(message)

    async def cancel(self, context: RequestContext, event_queue: EventQueue) -> None:
        if context.task_id is None or context.context_id is None:
            return
        await TaskUpdater(event_queue, context.task_id, context.context_id).cancel()


def a2a_routes(agent: ServedAgent, public_url: str, *, at_root: bool = False) -> list[Route]:
    """The card and JSON-RPC routes of one agent; ``at_root`` also serves its card at
    ``/.well-known/agent-card.json`` (a service of one agent)."""
    card = agent_card(agent.spec, public_url)
    handler = DefaultRequestHandler(
        agent_executor=RunnerExecutor(agent), task_store=InMemoryTaskStore(), agent_card=card
    )
    prefix = f"/agents/{agent.name}"
    routes = [
        *create_agent_card_routes(card, card_url=f"{prefix}{AGENT_CARD_WELL_KNOWN_PATH}"),
        *create_jsonrpc_routes(handler, rpc_url=f"{prefix}/"),
    ]
    if at_root:
        routes += create_agent_card_routes(card)
    return routes
