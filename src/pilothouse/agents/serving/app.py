"""The ASGI app of an agent service: Responses API, A2A servers, health, bearer auth."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp

from pilothouse.agents.serving.a2a_server import a2a_routes
from pilothouse.agents.serving.auth import Authenticate, BearerAuth
from pilothouse.agents.serving.responses import responses_routes
from pilothouse.agents.serving.runs import Agents, ServedAgent


async def _health(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


def create_agent_app(
    agents: Sequence[ServedAgent],
    *,
    authenticate: Authenticate,
    public_url: str,
    wall: Callable[[], float] = time.time,
) -> ASGIApp:
    """Serve ``agents``: ``POST /v1/responses`` (``model``: an agent's name),
    ``GET /v1/models``, and per agent its A2A card and endpoint under ``/agents/<name>/``
    (with one agent, its card at ``/.well-known/agent-card.json`` too). ``public_url`` is how
    clients reach this service (it goes into the Agent Cards)."""
    served = Agents(agents)
    routes: list[Route] = [Route("/health", _health, methods=["GET"])]
    routes += responses_routes(served, wall)
    for agent in agents:
        routes += a2a_routes(agent, public_url, at_root=len(agents) == 1)
    return BearerAuth(Starlette(routes=routes), authenticate)
