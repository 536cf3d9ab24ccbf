"""An stdio-only MCP client reaches the gateway through ``pilothouse toolgateway bridge``."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import mcp_types as types
import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters

from pilothouse.testing.permit_all_guard import PermitAllGuard
from tests.e2e.toolgateway.harness import running_gateway

pytestmark = pytest.mark.e2e

SRC = Path(__file__).parents[3] / "src"


def _bridge(url: str, key: str) -> StdioServerParameters:
    return StdioServerParameters(
        command=sys.executable,
        args=["-m", "pilothouse", "toolgateway", "bridge", "--url", url],
        env={"PILOTHOUSE_API_KEY": key, "PYTHONPATH": os.pathsep.join([str(SRC), *sys.path])},
    )


async def test_stdio_client_through_the_bridge(tmp_path: Path) -> None:
    guard = PermitAllGuard()
    async with (
        running_gateway(tmp_path, guard) as gw,
        Client(_bridge(gw.url, gw.alice), mode="legacy", cache=None) as client,
    ):
        names = {t.name for t in (await client.list_tools()).tools}
        assert {"files__echo", "web__echo"} <= names
        result = await client.call_tool("web__echo", {"text": "via bridge"})
        assert [c.text for c in result.content if isinstance(c, types.TextContent)] == [
            "web:via bridge"
        ]
    assert guard.calls[0].session.identity.team_name == "research"
