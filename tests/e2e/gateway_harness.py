"""Run a real gateway and fake engines on loopback inside the test's event loop."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

import uvicorn
from aiohttp import web

from pilothouse.clock import SystemClock
from pilothouse.config.fleet import GatewaySpec
from pilothouse.config.tracing import TracingSpec
from pilothouse.endpoints.pool import EndpointPool
from pilothouse.gateway.app import GatewayApp, create_app
from pilothouse.gateway.http_server import server_config
from pilothouse.scheduling.config import builtin_config
from pilothouse.scheduling.scheduler import build_scheduler
from pilothouse.scheduling.types import Endpoint
from pilothouse.testing.fake_engine import FakeBehaviour, create_fake_engine


@dataclass
class Harness:
    url: str
    engines: dict[str, FakeBehaviour]
    app: GatewayApp | None = None


class _QuietServer(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self):  # type: ignore[no-untyped-def]
        yield


@contextlib.asynccontextmanager
async def running_gateway(
    replicas: list[str],
    settings: GatewaySpec | None = None,
    model: str = "m",
    scheduler: str = "round-robin",
    tracing: TracingSpec | None = None,
) -> AsyncIterator[Harness]:
    """Fake engines named ``replicas`` serving ``model``, and a gateway in front of them."""
    runners: list[web.AppRunner] = []
    pool = EndpointPool()
    engines: dict[str, FakeBehaviour] = {}
    for name in replicas:
        behaviour = FakeBehaviour()
        runner = web.AppRunner(create_fake_engine(model, behaviour))
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        runners.append(runner)
        port = runner.addresses[0][1]
        pool.add(Endpoint(name=name, address=f"127.0.0.1:{port}", model=model, engine="openai"))
        engines[name] = behaviour
    spec = settings or GatewaySpec(port=0, probe_interval_s=0.1, read_timeout_s=2)
    scheduler_ = build_scheduler(builtin_config(scheduler), SystemClock())
    app = create_app(spec, pool, scheduler_, tracing=tracing)
    server = _QuietServer(server_config(app, "127.0.0.1", 0))
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:  # noqa: ASYNC110 - uvicorn exposes only a flag
            await asyncio.sleep(0.02)
        port = server.servers[0].sockets[0].getsockname()[1]
        yield Harness(url=f"http://127.0.0.1:{port}", engines=engines, app=app)
    finally:
        server.should_exit = True
        await task
        for runner in runners:
            await runner.cleanup()
