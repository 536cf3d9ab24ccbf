"""Run a gateway (optionally with a local fleet behind it) until SIGINT or SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
from collections.abc import Awaitable, Callable, Iterator

import uvicorn

from pilothouse.clock import SystemClock
from pilothouse.config.fleet import FleetSpec
from pilothouse.endpoints.pool import EndpointPool
from pilothouse.endpoints.prompt_tokens import pool_engines
from pilothouse.gateway.app import GatewayApp, build_gateway_scheduler, create_app
from pilothouse.gateway.asgi import ASGIApp
from pilothouse.gateway.http_server import server_config
from pilothouse.scheduling.types import Endpoint

log = logging.getLogger("pilothouse")


class _Server(uvicorn.Server):
    """uvicorn, minus its own signal handling: the caller owns shutdown."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def build_gateway(spec: FleetSpec, endpoints: list[Endpoint], *, ready: bool = False) -> GatewayApp:
    """A gateway app for ``spec`` over ``endpoints`` plus the spec's static endpoints."""
    pool = EndpointPool()
    for endpoint in endpoints:
        pool.add(endpoint, ready=ready)
    for model in spec.models:
        for i, address in enumerate(model.endpoints):
            pool.add(
                Endpoint(
                    name=f"{model.name}-{i}", address=address, model=model.name, engine=model.engine
                )
            )
    clock = SystemClock()
    scheduler, kv_events, prompt_tokens = build_gateway_scheduler(
        spec.gateway, clock, engines=pool_engines(pool.candidates), prepared=True
    )
    return create_app(
        spec.gateway,
        pool,
        scheduler,
        clock=clock,
        kv_events=kv_events,
        fleet=spec,
        preparer=prompt_tokens,
    )


async def serve(
    app: ASGIApp,
    host: str,
    port: int,
    on_started: Callable[[str], None],
    on_stopping: Callable[[], Awaitable[None]] | None = None,
) -> None:
    """Serve ``app`` until SIGINT/SIGTERM, then stop accepting, drain and call ``on_stopping``."""
    server = _Server(server_config(app, host, port, timeout_graceful_shutdown=30))
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, _request_exit, server)
    task = asyncio.create_task(server.serve())
    try:
        # uvicorn exposes readiness only as a flag.
        while not server.started and not task.done():  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        if server.started:
            _settle_heap()
            bound = server.servers[0].sockets[0].getsockname()[1] if server.servers else port
            on_started(f"http://{host}:{bound}/v1")
        await task
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        if on_stopping is not None:
            await on_stopping()


def _settle_heap() -> None:
    """Move start-up objects out of the garbage collector's way.

    Everything built so far (modules, apps, configs) lives as long as the process: freezing
    it spares every later collection a walk over it, and a larger first generation makes
    collections rarer on a request path that allocates many short-lived objects.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 20, 20)


def _request_exit(server: uvicorn.Server) -> None:
    if server.should_exit:
        server.force_exit = True
    server.should_exit = True
