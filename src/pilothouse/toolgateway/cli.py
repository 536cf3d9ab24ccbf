"""``pilothouse toolgateway``: serve ``/mcp`` in front of a fleet's ``tools:`` servers.

``pilothouse toolgateway -f fleet.yaml [--host H] [--port P]`` starts governance (the
fleet's ``gateway.governance``: required, as a tool gateway without identities would let
anyone call anything), reads the secrets, builds the rules, connects the upstream servers,
prints ``pilothouse is ready: http://HOST:PORT/mcp`` and serves until Ctrl-C, then closes
the upstreams (stdio servers stop) and flushes governance.

``pilothouse toolgateway bridge --url URL [--key K]``: see :mod:`.bridge`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import click
import uvicorn

from pilothouse.config.agents import AgentSpec
from pilothouse.config.fleet import FleetSpec, load_fleet
from pilothouse.config.tools import ToolsSpec
from pilothouse.errors import ConfigError, PilothouseError
from pilothouse.governance.audit import AuditLog
from pilothouse.governance.service import Governance, start_governance
from pilothouse.governance.store import SqlStore
from pilothouse.governance.tool_store import ToolStore, args_hash, definition_digest
from pilothouse.telemetry import require_sdk
from pilothouse.toolgateway.guard import ToolGuard
from pilothouse.toolgateway.rules import build_rules
from pilothouse.toolgateway.secrets import Secrets

READY_PREFIX = "pilothouse is ready: "
API_KEY_ENV = "PILOTHOUSE_API_KEY"
log = logging.getLogger("pilothouse.toolgateway")


@click.group(invoke_without_command=True)
@click.option("-f", "--file", "fleet_file", type=click.Path(path_type=Path), help="Fleet spec.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option("--port", default=8100, show_default=True, type=int, help="Port (0: any free).")
@click.pass_context
def toolgateway(ctx: click.Context, fleet_file: Path | None, host: str, port: int) -> None:
    """Run the MCP tool gateway: /mcp in front of the fleet's `tools:` servers, every call
    through identity, policy, pinning, taint, approvals, budgets and audit."""
    if ctx.invoked_subcommand is not None:
        return
    if fleet_file is None:
        raise click.UsageError("give the fleet spec: pilothouse toolgateway -f fleet.yaml")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        fleet = load_fleet(fleet_file)
        tools = require_tools(fleet)
        if fleet.tracing is not None:
            require_sdk()
    except PilothouseError as exc:
        raise click.UsageError(str(exc)) from exc
    with _errors():
        asyncio.run(serve(fleet, tools, host, port))


@toolgateway.command("bridge")
@click.option("--url", required=True, help="The gateway's /mcp URL.")
@click.option("--key", envvar=API_KEY_ENV, default=None, help=f"API key; or ${API_KEY_ENV}.")
def bridge_command(url: str, key: str | None) -> None:
    """Serve the gateway's tools over stdio, for MCP clients that speak only stdio."""
    from pilothouse.toolgateway.bridge import run_bridge

    logging.basicConfig(level=logging.WARNING)  # stderr; stdout is the MCP wire
    with _errors():
        asyncio.run(run_bridge(url, key))


def require_tools(fleet: FleetSpec) -> ToolsSpec:
    """The fleet's ``tools``, refused without them or without governance."""
    if fleet.tools is None:
        raise ConfigError("the fleet has no tools: section for the tool gateway to serve", "tools")
    if fleet.gateway.governance is None:
        raise ConfigError(
            "the tool gateway needs identities: add gateway.governance (docs/governance.md)",
            "gateway.governance",
        )
    return fleet.tools


def build_guard(
    spec: ToolsSpec,
    governance: Governance,
    secrets: Secrets,
    agents: Sequence[AgentSpec] = (),
) -> tuple[ToolGuard, AuditLog]:
    """The rules every call passes, over the governance store's tool tables (pins,
    approvals) and an audit log writing to its hash chain; start and close the log.
    ``agents``: the fleet's agents, held to their allow-lists and approvals."""
    store = governance.store
    if not isinstance(store, SqlStore):
        raise ConfigError("the tool gateway needs a SQL governance store", "gateway.governance")
    tools = ToolStore(store)
    audit = AuditLog(tools)
    rules = build_rules(
        spec,
        governance,
        secrets,
        store=tools,
        audit=audit,
        digest=definition_digest,
        args_hash=args_hash,
        agents=agents,
    )
    return rules, audit


async def serve(fleet: FleetSpec, tools: ToolsSpec, host: str, port: int) -> None:
    from pilothouse.toolgateway.app import create_toolgateway_app
    from pilothouse.toolgateway.upstream import Upstreams

    assert fleet.gateway.governance is not None
    secrets = Secrets.resolve(tools.secrets)
    tracing = None
    if fleet.tracing is not None:  # the MCP SDK traces through the global provider
        from pilothouse.telemetry.provider import start_tracing

        tracing = start_tracing(fleet.tracing, "toolgateway", install_global=True)
    governance = await start_governance(fleet.gateway.governance, f"toolgateway-{port}")
    try:
        guard, audit = build_guard(tools, governance, secrets, fleet.agents)
        await audit.start()
        try:
            upstreams = Upstreams(tools, secrets)
            app = create_toolgateway_app(
                tools,
                guard,
                upstreams,
                governance.governor.authenticate,
                host=host,
                traced=tracing is not None,
            )
            async with upstreams:
                await _run_http(app, host, port)
        finally:
            await audit.aclose()
    finally:
        await governance.aclose()
        if tracing is not None:
            await tracing.aclose()  # exports what is still queued


async def _run_http(app: Any, host: str, port: int) -> None:
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning"))
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            break
        await asyncio.sleep(0.05)
    if server.started:
        bound = server.servers[0].sockets[0].getsockname()[1]
        shown = f"[{host}]" if ":" in host else host
        print(f"{READY_PREFIX}http://{shown}:{bound}/mcp", flush=True)
    await task  # uvicorn handles SIGINT/SIGTERM: stops accepting, finishes, returns


@contextlib.contextmanager
def _errors() -> Iterator[None]:
    try:
        yield
    except PilothouseError as exc:
        raise click.ClickException(str(exc)) from exc
    except KeyboardInterrupt:
        pass
