"""The processes the tool gateway benchmark starts beside the gateway, each on loopback.

``python -m pilothouse.bench.toolgateway.servers echo`` serves an MCP server with one tool,
``echo(text)``, over streamable HTTP: the upstream every target ends at.

``python -m pilothouse.bench.toolgateway.servers passthrough --upstream URL`` serves the
SDK-only proxy: a low-level MCP server whose ``tools/list`` and ``tools/call`` forward to one
SDK client session with ``URL``, with no identity, rules or audit. It does what the gateway
does on the wire (an SDK server leg in, an SDK client leg out, one upstream session kept
open), so ``passthrough - direct`` is the cost of the SDK itself and ``gateway -
passthrough`` the cost of pilothouse's checks on top of it.

Both print ``READY_PREFIX`` and their ``/mcp`` URL once they accept connections, and run on
plain asyncio like ``pilothouse toolgateway`` does, so the three compare like for like.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import mcp_types as types
import uvicorn
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel import Server
from mcp.server.mcpserver import MCPServer
from mcp.shared._httpx_utils import create_mcp_http_client
from starlette.applications import Starlette

READY_PREFIX = "mcp server is ready: "
ECHO_TOOL = "echo"


def echo_app(host: str = "127.0.0.1") -> Starlette:
    """The upstream: one tool that returns its text, nothing else."""
    server = MCPServer("bench-echo")

    @server.tool(name=ECHO_TOOL)
    def echo(text: str) -> str:
        """Return the text unchanged."""
        return text

    return server.streamable_http_app(host=host, session_idle_timeout=None)


@contextlib.asynccontextmanager
async def passthrough_app(upstream_url: str, host: str = "127.0.0.1") -> AsyncIterator[Starlette]:
    """The SDK-only proxy in front of ``upstream_url`` (see the module docstring); the
    upstream session lives as long as the context."""
    async with (
        create_mcp_http_client() as http,
        Client(
            streamable_http_client(upstream_url, http_client=http), mode="legacy", cache=None
        ) as upstream,
    ):

        async def list_tools(
            ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
        ) -> types.ListToolsResult:
            return await upstream.list_tools(cursor=params.cursor if params else None)

        async def call_tool(
            ctx: ServerRequestContext[Any], params: types.CallToolRequestParams
        ) -> types.CallToolResult:
            return await upstream.call_tool(params.name, dict(params.arguments or {}))

        server: Server[Any] = Server(
            "bench-passthrough", on_list_tools=list_tools, on_call_tool=call_tool
        )
        yield server.streamable_http_app(host=host, session_idle_timeout=None)


async def serve(app: Starlette, host: str, port: int) -> None:
    """Serve ``app``; print the ready line once the socket is bound."""
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning"))
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            break
        await asyncio.sleep(0.02)
    if server.started:
        bound = server.servers[0].sockets[0].getsockname()[1]
        print(f"{READY_PREFIX}http://{host}:{bound}/mcp", flush=True)
    await task


async def _main(args: argparse.Namespace) -> None:
    if args.kind == "echo":
        await serve(echo_app(args.host), args.host, args.port)
        return
    async with passthrough_app(args.upstream, args.host) as app:
        await serve(app, args.host, args.port)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("kind", choices=["echo", "passthrough"])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--upstream", help="the echo server's /mcp URL (passthrough)")
    args = parser.parse_args(argv)
    if args.kind == "passthrough" and not args.upstream:
        parser.error("passthrough needs --upstream URL")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_main(args))


if __name__ == "__main__":
    main()
