"""``pilothouse toolgateway bridge``: the tool gateway for MCP clients that speak only stdio.

A desktop agent that can only start a command (stdio) runs this bridge as its MCP server;
the bridge forwards ``tools/list`` and ``tools/call`` to a tool gateway's ``/mcp`` over
streamable HTTP with the agent's key (``--key`` or ``$PILOTHOUSE_API_KEY``), and forwards
the gateway's ``notifications/tools/list_changed`` back. It holds no policy of its own:
every decision is the gateway's, for the identity of that key.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx2
import mcp_types as types
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.server.connection import Connection
from mcp.server.context import CallNext, ServerRequestContext
from mcp.server.lowlevel import NotificationOptions, Server
from mcp.server.stdio import stdio_server

from pilothouse.toolgateway.server import connection_of


class Bridge:
    """One gateway client behind one stdio server (see the module docstring)."""

    def __init__(self, gateway: Client) -> None:
        self.gateway = gateway
        self.connection: Connection | None = None
        self.mcp: Server[Any] = Server(
            "pilothouse-toolgateway-bridge",
            on_list_tools=self._list_tools,
            on_call_tool=self._call_tool,
        )
        self.mcp.middleware.append(self._remember)

    async def serve_stdio(self) -> None:
        options = self.mcp.create_initialization_options(NotificationOptions(tools_changed=True))
        async with stdio_server() as (read, write):
            await self.mcp.run(read, write, options)

    async def on_gateway_message(self, message: types.ServerNotification | Exception) -> None:
        if isinstance(message, types.ToolListChangedNotification) and self.connection:
            await self.connection.send_tool_list_changed()

    async def _remember(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> Any:
        self.connection = self.connection or connection_of(ctx)
        return await call_next(ctx)

    async def _list_tools(
        self, ctx: ServerRequestContext[Any, Any], params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        return await self.gateway.list_tools(cursor=params.cursor if params else None)

    async def _call_tool(
        self, ctx: ServerRequestContext[Any, Any], params: types.CallToolRequestParams
    ) -> types.CallToolResult:
        return await self.gateway.call_tool(params.name, params.arguments)


@contextlib.asynccontextmanager
async def connect(url: str, key: str | None) -> AsyncIterator[Bridge]:
    """A bridge with its gateway session open (the initialize handshake, so the gateway's
    list_changed reaches it)."""
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    bridge: Bridge | None = None

    async def on_message(message: types.ServerNotification | Exception) -> None:
        if bridge is not None:
            await bridge.on_gateway_message(message)

    async with httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(30, read=300)) as http:
        transport = streamable_http_client(url, http_client=http)
        async with Client(
            transport, mode="legacy", cache=None, message_handler=on_message
        ) as client:
            bridge = Bridge(client)
            yield bridge


async def run_bridge(url: str, key: str | None) -> None:
    async with connect(url, key) as bridge:
        await bridge.serve_stdio()
