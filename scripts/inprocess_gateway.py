"""The gateway's CPU per request in one process: no sockets, no load generator, no mock.

The gateway's own HTTP/1 protocol and app (``pilothouse gateway``'s, for ``bench
overhead``'s fleet: one replica, the ``default`` scheduler) serve ``--concurrency``
keep-alive connections whose transports are in memory; the upstream is a
:class:`~pilothouse.testing.FakeTransport` answering the mock's chat completion. Each answer
written sends the connection's next request, until ``--requests`` are served; the process's
CPU time (``time.process_time``, every thread) per request is printed. ``--governance``
serves through a governed gateway (``bench overhead --governance``'s tenant, its SQLite
store and ledger in a temporary directory); ``--no-ledger`` then makes ``Ledger.record`` a
no-op, to part the ledger's cost from admission and charging.

What it leaves out (system calls, the other processes' wake-ups, the mock) is a sixth of
the gateway's CPU under ``bench overhead`` (docs/benchmarks.md); what it keeps is measured
without their noise, so small changes to the request path show. Interleave runs of the two
versions compared (``PYTHONPATH=<other checkout>/src``): this host's noise between runs is
±15 %.

    .venv/bin/python scripts/inprocess_gateway.py --requests 30000
    .venv/bin/python scripts/inprocess_gateway.py --requests 30000 --governance
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

_UPSTREAM = "127.0.0.1:9"
"""The fleet's one replica: never dialled (the FakeTransport answers for it)."""


class _Connection:
    """An in-memory client transport: every complete answer sends the next request."""

    def __init__(self, run: _Run) -> None:
        self._run = run
        self.protocol: Any = None
        self.closed = False

    def write(self, data: bytes) -> None:
        run = self._run
        if run.stream and not data.endswith(b"0\r\n\r\n"):
            return  # a chunk of a streamed answer; its last one ends with the final chunk
        if not run.stream and not data.startswith(b"HTTP/1.1 200"):
            run.failed += 1
        run.answered(self)

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"sockname": ("127.0.0.1", 8000), "peername": ("127.0.0.1", 50000)}.get(
            name, default
        )

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass

    def get_write_buffer_size(self) -> int:
        return 0


class _Run:
    """``requests`` requests over the connections, each answer sending the next one."""

    def __init__(self, request: bytes, stream: bool) -> None:
        self.request = request
        self.stream = stream
        self.failed = 0
        self._left = 0
        self._open = 0
        self._done: asyncio.Future[None] | None = None

    def answered(self, connection: _Connection) -> None:
        if self._left > 0:
            self._left -= 1
            asyncio.get_running_loop().call_soon(connection.protocol.data_received, self.request)
            return
        self._open -= 1
        if self._open == 0 and self._done is not None:
            self._done.set_result(None)

    async def serve(self, connections: list[_Connection], requests: int) -> None:
        self._left, self._open = requests - len(connections), len(connections)
        self._done = asyncio.get_running_loop().create_future()
        for connection in connections:
            connection.protocol.data_received(self.request)
        await self._done


def _answer(stream: bool) -> Any:
    """The mock upstream's own answer (``bench overhead``'s), whole or as its SSE events."""
    from pilothouse.bench.mock_upstream import chat_completion_body, chat_stream_events
    from pilothouse.testing import Answer

    if stream:
        return Answer.sse(chat_stream_events())
    return Answer(200, (chat_completion_body(),))


async def _measure(args: argparse.Namespace, state_dir: Path) -> float:
    from uvicorn.server import ServerState

    from pilothouse.bench.overhead.governance import create_tenant, governance_block
    from pilothouse.bench.overhead.services import fleet_yaml, request_body
    from pilothouse.config.fleet import FleetSpec
    from pilothouse.gateway.drain import DrainCutoff
    from pilothouse.gateway.http_server import GatewayHttpProtocol, server_config
    from pilothouse.gateway.serve import build_gateway, settle_heap
    from pilothouse.testing import FakeTransport

    logging.getLogger("pilothouse").setLevel(logging.CRITICAL)  # the replica's failed probes
    governance, headers = None, b""
    if args.governance:
        key = create_tenant(state_dir)
        governance = governance_block(state_dir)
        headers = f"authorization: Bearer {key}\r\n".encode()
    fleet = fleet_yaml(f"http://{_UPSTREAM}", "default", governance)
    app = build_gateway(FleetSpec.model_validate(yaml.safe_load(fleet)), [])
    lifespan: asyncio.Queue[dict[str, str]] = asyncio.Queue()
    started = asyncio.Event()

    async def send(message: dict[str, Any]) -> None:
        if message["type"].startswith("lifespan.startup"):
            started.set()

    lifespan.put_nowait({"type": "lifespan.startup"})
    scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
    task = asyncio.create_task(app(scope, lifespan.get, send))  # type: ignore[arg-type]
    await started.wait()
    ctx = app.ctx
    ctx.transport = FakeTransport().always(_UPSTREAM, _answer(args.stream))
    for endpoint in ctx.pool.endpoints():
        ctx.pool.set_ready(endpoint.name, True)
    ctx.pool.set_ready = lambda *a, **k: None  # type: ignore[method-assign]  # no probe here
    body = request_body(args.stream)
    request = (
        b"POST /v1/chat/completions HTTP/1.1\r\nhost: gateway\r\ncontent-type: application/json\r\n"
        + headers
        + b"content-length: %d\r\n\r\n" % len(body)
        + body
    )
    run = _Run(request, args.stream)
    config = server_config(DrainCutoff(app), "127.0.0.1", 8000, lifespan="off")
    config.load()
    server_state = ServerState()
    connections = []
    for _ in range(args.concurrency):
        connection = _Connection(run)
        connection.protocol = GatewayHttpProtocol(config, server_state, app_state={})
        connection.protocol.connection_made(connection)
        connections.append(connection)
    await run.serve(connections, 2_000)  # warm-up
    settle_heap()  # as pilothouse gateway does once it is up
    cpu = time.process_time()
    await run.serve(connections, args.requests)
    cpu = time.process_time() - cpu
    lifespan.put_nowait({"type": "lifespan.shutdown"})
    await asyncio.wait_for(task, 30)
    if run.failed:
        raise SystemExit(f"{run.failed} answers were not 200 OK")
    return cpu / args.requests * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=30_000, help="requests measured")
    parser.add_argument("-c", "--concurrency", type=int, default=16, help="connections")
    parser.add_argument("--stream", action="store_true", help="streamed chat completions")
    parser.add_argument("--governance", action="store_true", help="a governed gateway")
    parser.add_argument(
        "--no-ledger", action="store_true", help="with --governance: Ledger.record a no-op"
    )
    args = parser.parse_args()
    if args.no_ledger:
        from pilothouse.governance.ledger import Ledger

        Ledger.record = lambda self, entry: None  # type: ignore[method-assign]
    import uvloop

    try:
        with tempfile.TemporaryDirectory() as state_dir:
            us = uvloop.run(_measure(args, Path(state_dir)))
    except KeyboardInterrupt:
        sys.exit(130)
    mode = "streamed" if args.stream else "plain"
    governed = ", governed" + (" (no ledger)" if args.no_ledger else "") if args.governance else ""
    print(f"{mode}{governed}, c={args.concurrency}: {us:.1f} µs of CPU per request")


if __name__ == "__main__":
    main()
