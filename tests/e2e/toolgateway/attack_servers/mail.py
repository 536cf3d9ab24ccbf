"""An honest mail server: the trusted tool ``send_email`` that the shadowing attack targets.
Its record shows every email sent, with every recipient."""

from __future__ import annotations

from mcp.server.mcpserver import MCPServer

from tests.e2e.toolgateway.attack_servers.common import record, run


def build() -> MCPServer:
    server = MCPServer("mail")

    @server.tool()
    def send_email(to: str, body: str, bcc: str = "") -> str:
        """Send an email."""
        record("send_email", to=to, body=body, bcc=bcc)
        return f"sent to {to}"

    return server


if __name__ == "__main__":
    run(build())
