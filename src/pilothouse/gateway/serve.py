"""Run a gateway (optionally with a local fleet behind it) until SIGINT or SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import socket
from collections.abc import Awaitable, Callable, Iterator

import uvicorn

from pilothouse.clock import SystemClock
from pilothouse.config.fleet import FleetSpec, HttpSpec
from pilothouse.endpoints.pool import EndpointPool
from pilothouse.endpoints.prompt_tokens import pool_engines
from pilothouse.errors import ConfigError
from pilothouse.gateway.app import GatewayApp, build_gateway_scheduler, create_app
from pilothouse.gateway.asgi import ASGIApp
from pilothouse.gateway.drain import DrainCutoff
from pilothouse.gateway.http_server import HttpLimits, server_config
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


def bind(host: str, port: int) -> socket.socket:
    """The gateway's listening socket, bound now; :class:`ConfigError` if it cannot be.

    ``pilothouse up`` binds before it starts any replica, so a port in use fails at once.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigError(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}; choose another "
            "gateway.port (or --port; 0 picks a free one)",
            path="gateway.port",
        ) from exc
    return sock


async def serve(
    app: ASGIApp,
    host: str,
    port: int,
    on_started: Callable[[str], None],
    on_stopping: Callable[[], Awaitable[None]] | None = None,
    *,
    sock: socket.socket | None = None,
    drain_s: float = 30.0,
    http: HttpSpec | None = None,
    on_refused: Callable[[int], None] | None = None,
) -> None:
    """Serve ``app`` until SIGINT/SIGTERM, then stop accepting, drain and call ``on_stopping``.

    ``sock``: a socket :func:`bind` returned (default: bind ``host:port`` now). The drain
    waits up to ``drain_s`` for requests in flight; :class:`DrainCutoff` answers the rest.
    """
    sock = sock or bind(host, port)
    cutoff = DrainCutoff(app)
    http = http or HttpSpec()
    limits = HttpLimits(
        http.max_header_bytes, http.max_headers, http.header_timeout_s, http.body_timeout_s
    )
    config = server_config(
        cutoff,
        host,
        port,
        limits,
        keep_alive_s=http.keep_alive_s,
        max_connections=http.max_connections,
        on_refused=on_refused,
        timeout_graceful_shutdown=drain_s,  # used as a float
    )
    server = _Server(config)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, _request_exit, server, cutoff)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        # uvicorn exposes readiness only as a flag.
        while not server.started and not task.done():  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        if server.started:
            settle_heap()
            bound = server.servers[0].sockets[0].getsockname()[1] if server.servers else port
            on_started(f"http://{host}:{bound}/v1")
        await task
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        if server.started and server.force_exit:
            # A second signal skips the drain, and uvicorn then skips the app's shutdown
            # too: its monitor would probe stopped replicas, its lifespan be cancelled.
            await server.lifespan.shutdown()
        if on_stopping is not None and server.started:
            await on_stopping()


def settle_heap() -> None:
    """Move start-up objects out of the garbage collector's way.

    Everything built so far (modules, apps, configs) lives as long as the process: freezing
    it spares every later collection a walk over it, and a larger first generation makes
    collections rarer on a request path that allocates many short-lived objects.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 20, 20)


def _request_exit(server: uvicorn.Server, cutoff: DrainCutoff) -> None:
    cutoff.begin()
    if server.should_exit:
        server.force_exit = True
    server.should_exit = True
