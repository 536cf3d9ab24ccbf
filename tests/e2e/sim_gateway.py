"""A real gateway in front of in-process simulator replicas, inside the test's event loop."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, replace

from pilothouse.clock import SystemClock
from pilothouse.config.fleet import FleetSpec
from pilothouse.endpoints.pool import EndpointPool
from pilothouse.gateway.app import GatewayApp, create_app
from pilothouse.gateway.http_server import server_config
from pilothouse.scheduling.config import builtin_config
from pilothouse.scheduling.scheduler import build_scheduler
from pilothouse.scheduling.types import Endpoint
from pilothouse.servers.sim import SimServer, SimSettings
from tests.e2e.gateway_harness import _QuietServer


@dataclass
class SimGateway:
    url: str
    app: GatewayApp
    replicas: dict[str, SimServer]


@contextlib.asynccontextmanager
async def sim_gateway(
    fleet: FleetSpec, replicas: Sequence[tuple[str, SimSettings]], scheduler: str = "default"
) -> AsyncIterator[SimGateway]:
    """Start ``replicas`` (endpoint name, settings with port 0) and a gateway for ``fleet``."""
    servers: dict[str, SimServer] = {}
    pool = EndpointPool()
    async with contextlib.AsyncExitStack() as stack:
        for name, settings in replicas:
            server = await stack.enter_async_context(SimServer(replace(settings, port=0)))
            servers[name] = server
            pool.add(
                Endpoint(
                    name=name,
                    address=f"127.0.0.1:{server.port}",
                    model=settings.model,
                    engine="sim",
                )
            )
        async with front_gateway(fleet, pool, scheduler) as (url, app):
            yield SimGateway(url, app, servers)


@contextlib.asynccontextmanager
async def front_gateway(
    fleet: FleetSpec, pool: EndpointPool, scheduler: str = "default"
) -> AsyncIterator[tuple[str, GatewayApp]]:
    """A gateway for ``fleet`` in front of ``pool``'s endpoints: its URL and its app."""
    built = build_scheduler(builtin_config(scheduler), SystemClock())
    app = create_app(fleet.gateway, pool, built, fleet=fleet)
    front = _QuietServer(server_config(app, "127.0.0.1", 0))
    task = asyncio.create_task(front.serve())
    try:
        while not front.started:  # noqa: ASYNC110 - uvicorn exposes only a flag
            await asyncio.sleep(0.02)
        port = front.servers[0].sockets[0].getsockname()[1]
        yield f"http://127.0.0.1:{port}", app
    finally:
        front.should_exit = True
        await task
