"""A tiny MCP tool server (stdio) that appends every call it runs to a log file: the
witness of "no tool call executed twice". ``python ledger_server.py LOGFILE``."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from mcp.server.mcpserver import MCPServer


def build(log: Path) -> MCPServer:
    server = MCPServer("ledger")

    def record(tool: str, arguments: dict[str, object]) -> None:
        with log.open("a") as out:
            out.write(json.dumps({"tool": tool, "arguments": arguments}) + "\n")

    @server.tool()
    def balance() -> str:
        """The account's balance."""
        record("balance", {})
        return "balance: 100 USD"

    @server.tool()
    def pay(to: str, usd: int) -> str:
        """Pay someone from the account."""
        record("pay", {"to": to, "usd": usd})
        return f"paid {to} {usd} USD"

    return server


if __name__ == "__main__":
    build(Path(sys.argv[1])).run("stdio")
