"""``POST /v1/responses`` (the agent as the model), ``GET /v1/responses/{id}`` and
``GET /v1/models`` (the agents). Wire shapes: :mod:`.responses_wire`."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator, Callable

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from pilothouse.agents.ports import RunResult, Step
from pilothouse.agents.serving.responses_wire import (
    EventWriter,
    Json,
    ResponseState,
    message_item,
    parse_request,
    reasoning_item,
    status_of,
    step_summary,
)
from pilothouse.agents.serving.runs import Agents, ServedAgent
from pilothouse.errors import BadRequest, NotFound, PilothouseError, RequestError
from pilothouse.openai.errors import error_from_exception

Wall = Callable[[], float]


def responses_routes(agents: Agents, wall: Wall = time.time) -> list[Route]:
    async def create(request: Request) -> Response:
        try:
            parsed = parse_request(await _json(request))
            agent = agents.get(parsed.model)
        except RequestError as exc:
            return _error(exc)
        state = ResponseState(f"resp_{uuid.uuid4().hex}", agent.name, int(wall()))
        if parsed.stream:
            return StreamingResponse(
                _stream(agents, agent, parsed.task, state), media_type="text/event-stream"
            )
        result = await _run(agents, agent, parsed.task, state)
        return JSONResponse(state.body(status_of(result), result))

    async def retrieve(request: Request) -> Response:
        key = request.path_params["response_id"]
        known = agents.run_of(key)
        if known is None:
            return _error(NotFound(f"no response '{key}' here", param="response_id"))
        agent, run_id = known
        result = await agents.get(agent).runner.result(run_id)
        state = ResponseState(key, agent, int(wall()), run_id=run_id)
        _answer(state, result)
        return JSONResponse(state.body(status_of(result), result))

    async def models(request: Request) -> Response:
        data = [
            {
                "id": a.name,
                "object": "model",
                "created": 0,
                "owned_by": "pilothouse-agent",
                "description": a.spec.description,
            }
            for a in agents.by_name.values()
        ]
        return JSONResponse({"object": "list", "data": data})

    return [
        Route("/v1/responses", create, methods=["POST"]),
        Route("/v1/responses/{response_id}", retrieve, methods=["GET"]),
        Route("/v1/models", models, methods=["GET"]),
    ]


async def _json(request: Request) -> object:
    try:
        return json.loads(await request.body())
    except ValueError as exc:
        raise BadRequest(f"the body is not JSON: {exc}") from exc


def _error(exc: RequestError) -> Response:
    status, body, headers = error_from_exception(exc)
    return Response(body, status, headers=headers, media_type="application/json")


async def _steps(
    agents: Agents, agent: ServedAgent, task: str, state: ResponseState
) -> AsyncIterator[Step | RunResult]:
    """Drive one run: yield each intermediate step as it is persisted, then its result."""
    try:
        async for step in agent.runner.run(task):
            if state.run_id is None:
                state.run_id = step.run_id
                agents.remember(state.id, agent.name, step.run_id)
            if step.kind != "final":
                yield step
        if state.run_id is None:
            yield RunResult(run_id="", status="failed", output="the run produced no step")
            return
        result = await agent.runner.result(state.run_id)
    except PilothouseError as exc:  # the runtime's own refusals (gateway down, ...)
        result = RunResult(run_id=state.run_id or "", status="failed", output=str(exc))
    yield result


async def _run(agents: Agents, agent: ServedAgent, task: str, state: ResponseState) -> RunResult:
    result = RunResult(run_id="", status="failed")
    async for item in _steps(agents, agent, task, state):
        if isinstance(item, Step):
            state.output.append(reasoning_item(f"rs_{uuid.uuid4().hex}", step_summary(item)))
        else:
            result = item
    _answer(state, result)
    return result


def _answer(state: ResponseState, result: RunResult) -> None:
    """The final text as the assistant message (for an incomplete run: why it stopped)."""
    if result.status != "failed" and result.output:
        state.output.append(message_item(f"msg_{uuid.uuid4().hex}", result.output))


async def _stream(
    agents: Agents, agent: ServedAgent, task: str, state: ResponseState
) -> AsyncIterator[bytes]:
    writer = EventWriter(state)
    for event in writer.created():
        yield _sse(event)
    result = RunResult(run_id="", status="failed")
    async for item in _steps(agents, agent, task, state):
        if isinstance(item, Step):
            for event in writer.reasoning(f"rs_{uuid.uuid4().hex}", step_summary(item)):
                yield _sse(event)
        else:
            result = item
    if result.status != "failed" and result.output:
        for event in writer.message(f"msg_{uuid.uuid4().hex}", result.output):
            yield _sse(event)
    for event in writer.finished(result):
        yield _sse(event)


def _sse(event: Json) -> bytes:
    return f"event: {event['type']}\ndata: {json.dumps(event)}\n\n".encode()
