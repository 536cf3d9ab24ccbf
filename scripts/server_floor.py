"""What the gateway's HTTP server costs before any gateway code runs (issue #10's next step).

Serves every request with the same fixed JSON answer two ways, each in a process of its own
on 127.0.0.1, and loads each with ``bench overhead``'s closed-loop client and request body:

- ``uvicorn``: uvicorn with the gateway's own protocol and settings
  (:func:`pilothouse.gateway.http_server.server_config`) around a minimal ASGI app that reads
  the body and sends the answer (``http.response.start`` and ``http.response.body``);
- ``raw``: an asyncio protocol on the ``httptools`` parser that writes the same answer in
  one write from a task per request.

It prints the server process's CPU time per request (user + system, from /proc) at each
concurrency, the two alternated for ``--rounds`` rounds. The difference is what the
gateway's HTTP/1 server costs per request above a bare parser (uvicorn's connection
handling, the gateway's request/response cycle, the ASGI messages) on this machine: the
ceiling of what a server of the gateway's own would save on the proxied routes.

    .venv/bin/python scripts/server_floor.py --rounds 2
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import sys
from typing import Any

BODY_PATH = "/v1/chat/completions"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _answer() -> bytes:
    from pilothouse.bench.mock_upstream import chat_completion_body

    return chat_completion_body()


async def _asgi_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    more = True
    while more:
        more = (await receive()).get("more_body", False)
    body = ANSWER
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"x-request-id", b"0123456789abcdef-1"),
    ]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class _Raw(asyncio.Protocol):
    """HTTP/1.1 keep-alive on httptools; every request gets the answer."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        import httptools

        self.transport = transport
        self.parser = httptools.HttpRequestParser(self)

    def data_received(self, data: bytes) -> None:
        self.parser.feed_data(data)

    def on_message_complete(self) -> None:
        asyncio.get_running_loop().create_task(self._answer())

    async def _answer(self) -> None:
        head = (
            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: "
            + str(len(ANSWER)).encode()
            + b"\r\nx-request-id: 0123456789abcdef-1\r\n\r\n"
        )
        self.transport.write(head + ANSWER)  # type: ignore[attr-defined]


async def _serve(kind: str, port: int) -> None:
    if kind == "uvicorn":
        import uvicorn

        from pilothouse.gateway.http_server import server_config

        await uvicorn.Server(server_config(_asgi_app, "127.0.0.1", port)).serve()
    else:
        server = await asyncio.get_running_loop().create_server(_Raw, "127.0.0.1", port)
        await server.serve_forever()


async def _measure(kind: str, concurrency: int, duration_s: float) -> float:
    from pilothouse.bench.loadgen import LoadSpec, run_load
    from pilothouse.bench.overhead.services import request_body
    from pilothouse.bench.processes import process_tree_cpu_s

    port = _free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, __file__, "--serve", kind, "--port", str(port)
    )
    try:
        for _ in range(100):  # until it listens (bounded: 10 s)
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.close()
                break
            except OSError:
                await asyncio.sleep(0.1)
        spec = LoadSpec(
            url=f"http://127.0.0.1:{port}{BODY_PATH}",
            body=request_body(False),
            stream=False,
            concurrency=concurrency,
            warmup_s=1.0,
            duration_s=duration_s,
        )
        result = await run_load(spec, {"server": lambda: process_tree_cpu_s(proc.pid)})
    finally:
        proc.terminate()
        await asyncio.wait_for(proc.wait(), 10)
    if result.errors or not result.completed:
        raise SystemExit(f"{kind}: {result.errors} errors ({result.first_error})")
    return result.cpu_s["server"] / result.completed * 1e3


async def _main(rounds: int, levels: list[int], duration_s: float) -> None:
    print("server   conc  CPU ms/request")
    for _ in range(rounds):
        for concurrency in levels:
            for kind in ("uvicorn", "raw"):
                ms = await _measure(kind, concurrency, duration_s)
                print(f"{kind:8s} {concurrency:4d}  {ms:.4f}")


ANSWER = b""

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=2, help="alternations of the two servers")
    parser.add_argument("-c", "--concurrency", type=int, action="append", help="default: 16, 64")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds measured per run")
    parser.add_argument("--serve", choices=("uvicorn", "raw"), help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    try:
        if args.serve:
            import uvloop

            ANSWER = _answer()
            uvloop.run(_serve(args.serve, args.port))
        else:
            asyncio.run(_main(args.rounds, args.concurrency or [16, 64], args.duration))
    except KeyboardInterrupt:
        sys.exit(130)
