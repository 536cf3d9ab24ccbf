"""A tool gateway on loopback for the end-to-end tests: governance in a temp SQLite store,
an upstream over stdio (a subprocess) and one over streamable HTTP, and agents' clients."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
import uvicorn
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from prometheus_client import CollectorRegistry
from starlette.types import ASGIApp

from pilothouse.config.governance import GovernanceSpec
from pilothouse.config.tools import ToolsSpec
from pilothouse.governance.service import Governance, start_governance
from pilothouse.toolgateway.app import create_toolgateway_app
from pilothouse.toolgateway.guard import ToolGuard
from pilothouse.toolgateway.secrets import Secrets
from pilothouse.toolgateway.upstream import Upstreams
from tests.e2e.governance.stores import sqlite_store
from tests.e2e.toolgateway.tool_server import build

TOOL_SERVER = Path(__file__).with_name("tool_server.py")
FILES_TOKEN = "files-token-5f1e"
HTTP_TOKEN = "http-token-9a2c"


class _QuietServer(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self):  # type: ignore[no-untyped-def]
        yield


@contextlib.asynccontextmanager
async def serving(app: ASGIApp, host: str = "127.0.0.1") -> AsyncIterator[str]:
    """``app`` on an ephemeral loopback port; yields ``http://host:port``."""
    server = _QuietServer(uvicorn.Config(app, host=host, port=0, log_level="warning"))
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            if task.done():
                task.result()
            await asyncio.sleep(0.02)
        port = server.servers[0].sockets[0].getsockname()[1]
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        await task


def tenants(state_dir: Path) -> tuple[str, str]:
    """Two API keys of two teams: two identities."""
    with sqlite_store(state_dir) as store:
        store.create_org("acme")
        store.create_team("acme", "research")
        store.create_team("acme", "support")
        alice, _ = store.create_key("research", "alice")
        bob, _ = store.create_key("support", "bob")
    return alice, bob


def tools_spec(http_url: str, **extra: Any) -> ToolsSpec:
    return ToolsSpec.model_validate(
        {
            "servers": [
                {
                    "name": "files",
                    "command": [sys.executable, str(TOOL_SERVER), "files"],
                    "env": {"TOKEN": "${secret:FILES_TOKEN}"},
                },
                {
                    "name": "web",
                    "url": http_url,
                    "headers": {"X-Api-Key": "${secret:HTTP_TOKEN}"},
                },
            ],
            "secrets": {"FILES_TOKEN": "env:TG_FILES_TOKEN", "HTTP_TOKEN": "env:TG_HTTP_TOKEN"},
            **extra,
        }
    )


@dataclass
class Gateway:
    url: str
    """``http://127.0.0.1:PORT/mcp``"""
    alice: str
    bob: str
    upstreams: Upstreams
    secrets: Secrets
    governance: Governance


@contextlib.asynccontextmanager
async def running_gateway(
    tmp: Path, guard: ToolGuard, origins: Sequence[str] = (), traced: bool = False
) -> AsyncIterator[Gateway]:
    """Both upstreams, governance and the gateway, all on loopback."""
    alice, bob = tenants(tmp / "state")
    env = {"TG_FILES_TOKEN": FILES_TOKEN, "TG_HTTP_TOKEN": HTTP_TOKEN}
    upstream_app = build("web").streamable_http_app()
    async with serving(upstream_app) as upstream_url:
        spec = tools_spec(f"{upstream_url}/mcp", allowed_origins=list(origins))
        secrets = Secrets.resolve(spec.secrets, env)
        governance = await start_governance(
            GovernanceSpec(state_dir=tmp / "state"), "toolgateway-test", CollectorRegistry()
        )
        upstreams = Upstreams(spec, secrets)
        app = create_toolgateway_app(
            spec, guard, upstreams, governance.governor.authenticate, traced=traced
        )
        try:
            async with upstreams, serving(app) as url:
                yield Gateway(f"{url}/mcp", alice, bob, upstreams, secrets, governance)
        finally:
            await governance.aclose()


@contextlib.asynccontextmanager
async def agent(
    url: str, key: str | None, mode: str = "legacy", **kwargs: Any
) -> AsyncIterator[Client]:
    """The official SDK client, as an agent holding ``key``."""
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    async with httpx2.AsyncClient(headers=headers, timeout=30) as http:
        transport = streamable_http_client(url, http_client=http)
        async with Client(transport, mode=mode, cache=None, **kwargs) as client:
            yield client
