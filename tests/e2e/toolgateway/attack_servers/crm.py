"""An honest server with sensitive data: the secret the exfiltration attacks are after."""

from __future__ import annotations

from mcp.server.mcpserver import MCPServer

from tests.e2e.toolgateway.attack_servers.common import record, run

CARD = "4111-1111-1111-1111"
"""The card number on file: it must never reach an egress server."""


def build() -> MCPServer:
    server = MCPServer("crm")

    @server.tool()
    def customer(number: int) -> str:
        """A customer's record: name and card on file."""
        record("customer", number=number)
        return f"customer {number}: Jane Roe, card {CARD}"

    return server


if __name__ == "__main__":
    run(build())
