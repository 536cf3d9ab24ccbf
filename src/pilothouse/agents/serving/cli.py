"""``pilothouse agent serve``: the agents of a Fleet over the Responses API and A2A.

Runners come from ``pilothouse.agents.runtime.build_runner(spec, fleet, settings)``, imported
when the command runs. Callers are authenticated like the gateway does: the Fleet's
governance keys, else its ``gateway.api_key``, else (a gateway that checks nothing) anyone.
"""

from __future__ import annotations

import asyncio
import importlib
import os
import socket
from collections.abc import Sequence
from contextlib import AsyncExitStack
from pathlib import Path
from typing import cast

import click

from pilothouse.agents.serving.auth import Authenticate, allow_anyone, static_key
from pilothouse.agents.serving.runs import ServedAgent
from pilothouse.agents.serving.settings import RunnerFactory, RunnerSettings
from pilothouse.cli_lazy import LazyGroup
from pilothouse.config.agents import AgentSpec
from pilothouse.config.fleet import FleetSpec
from pilothouse.errors import ConfigError, PilothouseError

READY_PREFIX = "pilothouse is ready: "
"""Printed on stdout with the service's URL once it accepts connections (``pilothouse up``
waits for it)."""

RUNTIME_MODULE = "pilothouse.agents.runtime"
ENV_GATEWAY_URL = "PILOTHOUSE_GATEWAY_URL"
ENV_TOOLGATEWAY_URL = "PILOTHOUSE_TOOLGATEWAY_URL"
ENV_AGENT_KEY = "PILOTHOUSE_AGENT_KEY"
ENV_PUBLIC_URL = "PILOTHOUSE_AGENT_PUBLIC_URL"
DEFAULT_PORT = 8300

EPILOG = """\b
Examples:
  pilothouse agent serve -f fleet.yaml                      # every agent, on 127.0.0.1:8300
  pilothouse agent serve -f fleet.yaml --agent triage --port 8301
  curl -s localhost:8300/v1/responses -H "Authorization: Bearer $KEY" \\
       -d '{"model": "triage", "input": "Ticket 42 is about a refund"}'
  curl -s localhost:8300/agents/triage/.well-known/agent-card.json
"""


@click.group(
    name="agent",
    cls=LazyGroup,
    lazy={
        "serve": "pilothouse.agents.serving.cli:agent_serve",
        "run": "pilothouse.agents.cli:run_command",
        "runs": "pilothouse.agents.cli:runs",
    },
)
def agent_group() -> None:
    """Governed agents: run one in the terminal, list and resume runs, serve them (Responses
    API, A2A). Every model and tool call carries the agent's identity, is budgeted before it
    happens and persisted, and a run can wait for a person across restarts."""


def key_env(name: str) -> str:
    """The variable holding one agent's key when a process serves several."""
    return f"{ENV_AGENT_KEY}_{name.upper().replace('-', '_')}"


@click.command(name="serve", epilog=EPILOG)
@click.option(
    "-f",
    "--file",
    "fleet_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    required=True,
    help="Fleet spec with an agents: section.",
)
@click.option(
    "--agent",
    "agent_names",
    multiple=True,
    help="Serve this agent (repeat for several) [default: every agent of the fleet].",
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option("--port", default=DEFAULT_PORT, show_default=True, type=int, help="Port.")
@click.option(
    "--gateway-url",
    envvar=ENV_GATEWAY_URL,
    help=f"Gateway the agents call models through; or ${ENV_GATEWAY_URL} "
    "[default: http://127.0.0.1:<gateway.port>].",
)
@click.option(
    "--toolgateway-url",
    envvar=ENV_TOOLGATEWAY_URL,
    help=f"Tool gateway the agents call tools through; or ${ENV_TOOLGATEWAY_URL} "
    "[default: http://127.0.0.1:8100 when the fleet has tools].",
)
@click.option(
    "--key",
    envvar=ENV_AGENT_KEY,
    help=f"The agent's own API key; or ${ENV_AGENT_KEY}. With several agents, each reads "
    f"${ENV_AGENT_KEY}_<NAME> (upper case, '-' as '_') first.",
)
@click.option(
    "--public-url",
    envvar=ENV_PUBLIC_URL,
    help=f"How clients reach this service, written into the Agent Cards; or ${ENV_PUBLIC_URL} "
    "[default: http://<host>:<port>].",
)
def agent_serve(
    fleet_file: Path,
    agent_names: Sequence[str],
    host: str,
    port: int,
    gateway_url: str | None,
    toolgateway_url: str | None,
    key: str | None,
    public_url: str | None,
) -> None:
    """Serve agents over the OpenAI Responses API (/v1/responses, the agent as the model) and
    as A2A servers (an Agent Card per agent under /agents/<name>/)."""
    from pilothouse.config.fleet import load_fleet

    try:
        fleet = load_fleet(fleet_file)
        specs = _chosen(fleet, agent_names)
    except PilothouseError as exc:
        raise click.ClickException(str(exc)) from exc
    factory = runner_factory()
    try:
        sock = _bind(host, port)
    except OSError as exc:
        raise click.ClickException(f"cannot listen on {host}:{port}: {exc.strerror}") from exc
    port = sock.getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    base = public_url or f"http://{shown}:{port}"
    try:
        served = []
        for spec in specs:
            settings = _settings(fleet, spec, gateway_url, toolgateway_url, key)
            served.append(ServedAgent(spec, factory(spec, fleet, settings)))
        asyncio.run(_serve(fleet, served, sock, base))
    except PilothouseError as exc:
        raise click.ClickException(str(exc)) from exc


def _settings(
    fleet: FleetSpec,
    spec: AgentSpec,
    gateway_url: str | None,
    toolgateway_url: str | None,
    key: str | None,
) -> RunnerSettings:
    tools = "http://127.0.0.1:8100" if fleet.tools is not None else None
    return RunnerSettings(
        gateway_url=gateway_url or f"http://127.0.0.1:{fleet.gateway.port}",
        toolgateway_url=toolgateway_url or tools,
        api_key=os.environ.get(key_env(spec.name)) or key,
    )


def _chosen(fleet: FleetSpec, names: Sequence[str]) -> list[AgentSpec]:
    if not fleet.agents:
        raise ConfigError("the fleet has no agents: section", path="agents")
    by_name = {a.name: a for a in fleet.agents}
    unknown = [n for n in names if n not in by_name]
    if unknown:
        raise ConfigError(
            f"no agent named {', '.join(unknown)} (the fleet has {', '.join(sorted(by_name))})",
            path="agents",
        )
    return [by_name[n] for n in names] if names else list(fleet.agents)


def runner_factory() -> RunnerFactory:
    """``build_runner`` of the runtime, or a clear error where this build has none."""
    try:
        module = importlib.import_module(RUNTIME_MODULE)
    except ModuleNotFoundError as exc:
        if exc.name != RUNTIME_MODULE:
            raise
        raise click.ClickException(
            f"the agent runtime ({RUNTIME_MODULE}) is not available in this build, so no agent "
            "can run; use a pilothouse that includes it"
        ) from exc
    factory = getattr(module, "build_runner", None)
    if not callable(factory):
        raise click.ClickException(f"{RUNTIME_MODULE} has no build_runner(spec, fleet, settings)")
    return cast(RunnerFactory, factory)


def _bind(host: str, port: int) -> socket.socket:
    """The listening socket, bound before anything starts (a port in use fails first; port
    0 gets a free one, announced in the ready line)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


async def _serve(
    fleet: FleetSpec, agents: Sequence[ServedAgent], sock: socket.socket, public_url: str
) -> None:
    import uvicorn

    from pilothouse.agents.serving.app import create_agent_app  # a2a-sdk: the agents extra

    async with AsyncExitStack() as stack:
        authenticate = await _authenticate(fleet, stack, sock.getsockname()[1])
        app = create_agent_app(agents, authenticate=authenticate, public_url=public_url)
        names = ", ".join(a.name for a in agents)
        click.echo(f"serving agents {names} on {public_url} (Responses API and A2A)", err=True)

        class _Announcing(uvicorn.Server):
            async def startup(self, sockets: list[socket.socket] | None = None) -> None:
                await super().startup(sockets)
                if not self.should_exit:
                    click.echo(f"{READY_PREFIX}{public_url}")

        server = _Announcing(uvicorn.Config(app, log_level="warning"))
        await server.serve(sockets=[sock])


async def _authenticate(fleet: FleetSpec, stack: AsyncExitStack, port: int) -> Authenticate:
    """The gateway's rule for keys: governance, else its api_key, else anyone."""
    if fleet.gateway.governance is not None:
        from pilothouse.agents.serving.auth import governor_authenticate
        from pilothouse.governance.service import start_governance

        governance = await start_governance(fleet.gateway.governance, f"agents-{port}")
        stack.push_async_callback(governance.aclose)
        return governor_authenticate(governance.governor)
    if fleet.gateway.api_key is not None:
        return static_key(fleet.gateway.api_key)
    return allow_anyone
