"""Run a simulator server: in-process (tests, benchmarks) or as the CLI's process."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from collections.abc import Callable
from types import TracebackType

from aiohttp import web

from pilothouse.servers.sim.server import STATE, create_sim_app
from pilothouse.servers.sim.settings import SimSettings
from pilothouse.servers.sim.state import SimState, exit_process

READY_PREFIX = "sim engine is listening: "


class SimServer:
    """One simulated replica on ``settings.host``; port 0 picks a free port.

    ``async with SimServer(settings) as server:`` starts it; ``server.base_url`` and
    ``server.kv_endpoint`` / ``server.kv_replay_endpoint`` say where it listens. In-process,
    ``--crash-after`` stops the server (it no longer accepts connections) instead of
    exiting the process, unless another ``on_crash`` is given.
    """

    def __init__(self, settings: SimSettings, *, on_crash: Callable[[], None] | None = None):
        self.settings = settings
        self._on_crash = on_crash
        self._runner: web.AppRunner | None = None
        self._crash_task: asyncio.Task[None] | None = None
        self.port = settings.port
        self.crashed = False

    @property
    def state(self) -> SimState:
        assert self._runner is not None, "server not started"
        return self._runner.app[STATE]

    @property
    def base_url(self) -> str:
        return f"http://{self.settings.host}:{self.port}"

    @property
    def kv_endpoint(self) -> str | None:
        publisher = self.state.publisher
        return None if publisher is None else publisher.endpoint

    @property
    def kv_replay_endpoint(self) -> str | None:
        publisher = self.state.publisher
        return None if publisher is None else publisher.replay_endpoint

    @property
    def kv_topic(self) -> str | None:
        publisher = self.state.publisher
        return None if publisher is None else publisher.topic

    async def start(self) -> None:
        app = create_sim_app(self.settings, on_crash=self._on_crash or self._crash)
        # handler_cancellation: a client that closes its connection cancels its handler
        # (aiohttp's default since 3.9 is to let it run on), whose ``finally`` aborts the
        # request in the engine model, streamed or not, waiting or running (as vLLM does).
        self._runner = web.AppRunner(
            app, shutdown_timeout=1.0, access_log=None, handler_cancellation=True
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.settings.host, self.settings.port)
        await site.start()
        self.port = int(self._runner.addresses[0][1])
        self.state.start_kv_events(self.port)

    async def stop(self) -> None:
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    async def __aenter__(self) -> SimServer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._crash_task is not None:
            await self._crash_task
        await self.stop()

    def _crash(self) -> None:
        self.crashed = True
        self._crash_task = asyncio.get_running_loop().create_task(self.stop())


async def serve(settings: SimSettings) -> None:
    """Serve until SIGINT/SIGTERM; ``--crash-after`` exits the process abruptly."""
    server = SimServer(settings, on_crash=_exit_now)
    await server.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):  # not on every platform
            loop.add_signal_handler(sig, stop.set)
    print(f"{READY_PREFIX}{server.base_url}", flush=True)
    if server.kv_endpoint is not None:
        print(
            f"kv events: {server.kv_endpoint} topic={server.kv_topic!r} "
            f"replay={server.kv_replay_endpoint}",
            file=sys.stderr,
            flush=True,
        )
    try:
        await stop.wait()
    finally:
        await server.stop()


def _exit_now() -> None:
    sys.stdout.flush()
    exit_process()
