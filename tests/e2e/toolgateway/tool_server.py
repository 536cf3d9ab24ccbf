"""A small upstream MCP server for the tool gateway's tests (stdio or streamable HTTP).

``python tool_server.py NAME`` serves it over stdio. Its tools show what the gateway did:
``env`` returns an environment variable of the server process (secrets injected into a
stdio server's env), ``header`` a request header it received (secrets injected into an
HTTP server's headers, and the agent's own Authorization never passed through), ``grow``
adds a tool and announces ``notifications/tools/list_changed``.
"""

from __future__ import annotations

import os
import sys

from mcp.server.mcpserver import Context, MCPServer


def build(name: str = "upstream") -> MCPServer:
    server = MCPServer(name)

    @server.tool()
    def echo(text: str) -> str:
        """Return the text."""
        return f"{name}:{text}"

    @server.tool()
    def env(variable: str) -> str:
        """An environment variable of this server process ('' when unset)."""
        return os.environ.get(variable, "")

    @server.tool()
    def header(name: str, ctx: Context) -> str:
        """A header of the HTTP request that carried this call ('' when absent)."""
        request = ctx.request_context.request
        headers = getattr(request, "headers", None)
        return headers.get(name, "") if headers is not None else ""

    @server.tool()
    def die() -> str:
        """Exit the server process at once (a crashed tool server)."""
        os._exit(3)

    @server.tool()
    async def grow(ctx: Context) -> str:
        """Add the tool 'extra' and announce the change."""

        def extra() -> str:
            """Added by grow."""
            return "extra"

        server.add_tool(extra, name="extra")
        await ctx.session.send_tool_list_changed()
        return "grown"

    return server


if __name__ == "__main__":
    build(sys.argv[1] if len(sys.argv) > 1 else "upstream").run("stdio")
