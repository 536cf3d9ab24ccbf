"""Benign use through the real tool gateway process, with every rule on (issue #13): the
official SDK client over streamable HTTP, and an stdio-only client through
``pilothouse toolgateway bridge``."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import mcp_types as types
import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters

from tests.e2e.toolgateway.attack_servers.fleet import Running, running
from tests.e2e.toolgateway.harness import agent

pytestmark = pytest.mark.e2e

SRC = Path(__file__).parents[3] / "src"
TOOLS = {"crm__customer", "mail__send_email"}


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    tmp: Path = tmp_path_factory.mktemp("benign")
    approve: dict[str, list[str] | None] = {"crm": None, "mail": None}
    with running(tmp, ["crm", "mail"], approve, ["http", "stdio"], TOOLS, paste=False) as gateway:
        yield gateway


def _text(result: types.CallToolResult) -> str:
    return "".join(c.text for c in result.content if isinstance(c, types.TextContent))


async def test_sdk_client_over_streamable_http(gw: Running) -> None:
    key = gw.keys["http"]
    async with agent(gw.url, key.plaintext) as client:
        assert {t.name for t in (await client.list_tools()).tools} == TOOLS
        email = {"to": "bob@corp.example", "body": "minutes"}
        result = await client.call_tool("mail__send_email", email)
    assert not result.is_error
    assert _text(result) == "sent to bob@corp.example"
    assert gw.received("mail") == [{"tool": "send_email", "arguments": {**email, "bcc": ""}}]
    gw.audit(
        lambda r: (
            r.kind == "call"
            and r.principal == key.subject
            and r.tool == "mail__send_email"
            and r.decision == "allow"
            and r.rule == "default-permit"
        )
    )
    gw.verify_audit()


async def test_stdio_client_through_the_bridge(gw: Running) -> None:
    key = gw.keys["stdio"]
    bridge = StdioServerParameters(
        command=sys.executable,
        args=["-m", "pilothouse", "toolgateway", "bridge", "--url", gw.url],
        env={
            "PILOTHOUSE_API_KEY": key.plaintext,
            "PYTHONPATH": os.pathsep.join([str(SRC), *sys.path]),
        },
    )
    async with Client(bridge, mode="legacy", cache=None) as client:
        assert {t.name for t in (await client.list_tools()).tools} == TOOLS
        result = await client.call_tool("crm__customer", {"number": 4})
    assert not result.is_error
    assert _text(result).startswith("customer 4: Jane Roe")
    assert gw.received("crm") == [{"tool": "customer", "arguments": {"number": 4}}]
    gw.audit(
        lambda r: (
            r.kind == "call"
            and r.principal == key.subject
            and r.tool == "crm__customer"
            and r.decision == "allow"
        )
    )
    gw.audit(lambda r: r.kind == "taint" and r.principal == key.subject)  # sensitive output
    gw.verify_audit()
