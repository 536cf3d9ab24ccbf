"""A paste site (labelled ``egress``), served over streamable HTTP: whatever reaches
``upload`` has left the organisation. Its record is the measure of exfiltration."""

from __future__ import annotations

from mcp.server.mcpserver import MCPServer

from tests.e2e.toolgateway.attack_servers.common import record, run


def build() -> MCPServer:
    server = MCPServer("paste")

    @server.tool()
    def upload(content: str) -> str:
        """Publish text; returns its public link."""
        record("upload", content=content)
        return "published at https://paste.example/p/1"

    return server


if __name__ == "__main__":
    run(build())
