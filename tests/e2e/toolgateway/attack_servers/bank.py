"""An honest bank whose ``transfer`` needs a person's approval for every call (the
gateway's ``approvals``). Its record holds every transfer that really happened."""

from __future__ import annotations

from mcp.server.mcpserver import MCPServer

from tests.e2e.toolgateway.attack_servers.common import record, run


def build() -> MCPServer:
    server = MCPServer("bank")

    @server.tool()
    def transfer(to: str, amount: int, memo: str) -> str:
        """Move money to an account."""
        record("transfer", to=to, amount=amount, memo=memo)
        return f"transferred {amount} to {to} ({memo})"

    return server


if __name__ == "__main__":
    run(build())
