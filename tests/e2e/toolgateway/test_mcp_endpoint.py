"""The federating /mcp endpoint end to end: real upstreams (stdio subprocess, streamable
HTTP), governance identities, the official SDK client as the agent (issue #13 point 1)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
import mcp_types as types
import pytest

from pilothouse.testing.permit_all_guard import PermitAllGuard
from pilothouse.toolgateway.guard import ToolCall, ToolResult, Verdict
from tests.e2e.toolgateway.harness import FILES_TOKEN, HTTP_TOKEN, agent, running_gateway

pytestmark = pytest.mark.e2e

JSON_AND_SSE = "application/json, text/event-stream"


def _text(result: types.CallToolResult) -> str:
    return "".join(c.text for c in result.content if isinstance(c, types.TextContent))


class RedactingGuard(PermitAllGuard):
    """Permits everything, and redacts secrets as the rules do (``Secrets.values``)."""

    def __init__(self, secrets: Sequence[str] = ()) -> None:
        super().__init__()
        self.secrets = list(secrets)

    async def after_call(
        self, call: ToolCall, verdict: Verdict, result: ToolResult, elapsed_s: float
    ) -> ToolResult:
        def clean(data: Any) -> Any:
            text = json.dumps(data)
            for value in self.secrets:
                text = text.replace(value, "[redacted]")
            return json.loads(text)

        return ToolResult(clean(result.content), clean(result.structured), result.is_error)


class ScriptedGuard(PermitAllGuard):
    """Denies ``web__echo``, leaves ``files__echo`` pending, hides ``files__grow``."""

    async def visible(self, session: Any, tools: Sequence[Any]) -> list[Any]:
        return [t for t in tools if t.federated != "files__grow"]

    async def before_call(self, call: ToolCall) -> Verdict:
        self.calls.append(call)
        if call.tool.federated == "web__echo":
            return Verdict("deny", "echo is not for you", "policy7")
        if call.tool.federated == "files__echo":
            return Verdict("pending", "a person approves each echo", "approval", "apr_1")
        return Verdict("allow", "ok", "default")


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_list_and_call_namespaced(tmp_path: Path, mode: str) -> None:
    guard = PermitAllGuard()
    async with running_gateway(tmp_path, guard) as gw, agent(gw.url, gw.alice, mode) as client:
        names = {t.name for t in (await client.list_tools()).tools}
        assert {"files__echo", "files__env", "web__echo", "web__header"} <= names
        assert _text(await client.call_tool("files__echo", {"text": "hi"})) == "files:hi"
        assert _text(await client.call_tool("web__echo", {"text": "yo"})) == "web:yo"
        unknown = await client.call_tool("nothere__echo", {"text": "x"})
        assert unknown.is_error
    assert [c.tool.federated for c in guard.calls] == ["files__echo", "web__echo"]
    assert guard.calls[0].session.identity.team_name == "research"


async def test_sessions_are_per_identity_and_protocol(tmp_path: Path) -> None:
    guard = PermitAllGuard()
    async with running_gateway(tmp_path, guard) as gw:
        async with agent(gw.url, gw.alice) as client:
            await client.call_tool("files__echo", {"text": "a"})
            await client.call_tool("files__echo", {"text": "b"})
        async with agent(gw.url, gw.bob, "auto") as client:
            await client.call_tool("files__echo", {"text": "c"})
    first, second, third = (c.session for c in guard.calls)
    assert first.id == second.id
    assert not first.id.startswith("identity:")
    assert third.id == f"identity:{third.identity.subject}"  # 2026-07-28: sessionless


async def test_deny_and_pending_are_tool_errors_without_upstream_calls(tmp_path: Path) -> None:
    async with running_gateway(tmp_path, ScriptedGuard()) as gw, agent(gw.url, gw.alice) as client:
        names = {t.name for t in (await client.list_tools()).tools}
        assert "files__grow" not in names
        assert "files__echo" in names
        denied = await client.call_tool("web__echo", {"text": "x"})
        assert denied.is_error
        assert _text(denied) == "refused by policy7: echo is not for you"
        pending = await client.call_tool("files__echo", {"text": "x"})
        assert pending.is_error
        assert "pending approval apr_1" in _text(pending)
        assert "Call again" in _text(pending)
        assert pending.structured_content == {"approval_id": "apr_1"}


async def test_list_changed_reaches_the_agent(tmp_path: Path) -> None:
    guard = PermitAllGuard()
    changed = asyncio.Event()

    async def on_message(message: Any) -> None:
        if isinstance(message, types.ToolListChangedNotification):
            changed.set()

    async with (
        running_gateway(tmp_path, guard) as gw,
        agent(gw.url, gw.alice, message_handler=on_message) as client,
    ):
        assert "files__extra" not in {t.name for t in (await client.list_tools()).tools}
        before = guard.changes
        assert _text(await client.call_tool("files__grow", {})) == "grown"
        await asyncio.wait_for(changed.wait(), 20)
        assert guard.changes > before
        assert [t.name for t in guard.listings["files"]][-1] == "extra"
        assert "files__extra" in {t.name for t in (await client.list_tools()).tools}


async def test_secrets_reach_upstreams_only(tmp_path: Path) -> None:
    guard = RedactingGuard()
    async with running_gateway(tmp_path, guard) as gw, agent(gw.url, gw.alice) as client:
        guard.secrets = gw.secrets.values()
        listing = (await client.list_tools()).model_dump_json()
        # stdio env and HTTP headers got the values (the guard saw and redacted them) ...
        env = await client.call_tool("files__env", {"variable": "TOKEN"})
        header = await client.call_tool("web__header", {"name": "x-api-key"})
        # ... and the agent's own credentials stopped at the gateway.
        authorization = await client.call_tool("web__header", {"name": "authorization"})
        leaked = await client.call_tool("files__env", {"variable": "TG_FILES_TOKEN"})
    assert _text(env) == "[redacted]"
    assert _text(header) == "[redacted]"
    assert _text(authorization) == ""
    assert _text(leaked) == ""
    for secret in (FILES_TOKEN, HTTP_TOKEN, gw.alice):
        assert secret not in listing


def _initialize(key: str | None, **headers: str) -> dict[str, Any]:
    body = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-11-25",
            "capabilities": {},
            "clientInfo": {"name": "raw", "version": "0"},
        },
    }
    auth = {"Authorization": f"Bearer {key}"} if key else {}
    return {"json": body, "headers": {"Accept": JSON_AND_SSE, **auth, **headers}}


async def test_http_refusals(tmp_path: Path) -> None:
    origin = "https://console.example"
    async with (
        running_gateway(tmp_path, PermitAllGuard(), [origin]) as gw,
        httpx.AsyncClient() as http,
    ):
        missing = await http.post(gw.url, **_initialize(None))
        assert missing.status_code == 401
        assert missing.headers["www-authenticate"].startswith("Bearer")
        wrong = await http.post(gw.url, **_initialize("sk-ph-not-a-key"))
        assert wrong.status_code == 401
        evil = await http.post(gw.url, **_initialize(gw.alice, Origin="https://evil.example"))
        assert evil.status_code == 403
        rebound = await http.post(gw.url, **_initialize(gw.alice, Host="attacker.example"))
        assert rebound.status_code == 421
        allowed = await http.post(gw.url, **_initialize(gw.alice, Origin=origin))
        assert allowed.status_code == 200


async def test_a_session_is_refused_to_another_identity(tmp_path: Path) -> None:
    """The confused deputy: bob presents alice's session id."""
    guard = PermitAllGuard()
    async with running_gateway(tmp_path, guard) as gw, httpx.AsyncClient() as http:
        opened = await http.post(gw.url, **_initialize(gw.alice))
        session = opened.headers["mcp-session-id"]
        listing = {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}

        async def post(key: str, body: dict[str, Any]) -> httpx.Response:
            headers = {
                "Authorization": f"Bearer {key}",
                "Accept": JSON_AND_SSE,
                "Mcp-Session-Id": session,
                "MCP-Protocol-Version": "2025-11-25",
            }
            return await http.post(gw.url, json=body, headers=headers)

        initialized = {"jsonrpc": "2.0", "method": "notifications/initialized"}
        assert (await post(gw.alice, initialized)).status_code == 202
        stolen = await post(gw.bob, listing)
        assert stolen.status_code == 404
        assert "files__echo" not in stolen.text
        assert [(s, rule) for s, _, rule in guard.refusals] == [(session, "session-owner")]
        own = await post(gw.alice, listing)
        assert own.status_code == 200
        assert "files__echo" in own.text
