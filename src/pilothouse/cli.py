"""The ``pilothouse`` command line: up | apply | gateway | engine | validate | bench."""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any, Literal, NoReturn

import click

from pilothouse.cli_lazy import LazyGroup
from pilothouse.errors import ConfigError, PilothouseError

API_KEY_ENV = "PILOTHOUSE_API_KEY"


@click.group(
    cls=LazyGroup,
    lazy={
        "engine": "pilothouse.servers.cli:engine",
        "bench": "pilothouse.bench.cli:bench",
        "render": "pilothouse.controlplane.render.cli:render_group",
        "deploy": "pilothouse.controlplane.kube_cli:deploy_group",
        "epp": "pilothouse.epp.cli:epp_command",
        "orgs": "pilothouse.governance.cli:orgs",
        "teams": "pilothouse.governance.cli:teams",
        "keys": "pilothouse.governance.cli:keys",
        "usage": "pilothouse.governance.cli:usage",
        "tools": "pilothouse.governance.tool_cli:tools",
        "approvals": "pilothouse.governance.tool_cli:approvals",
        "audit": "pilothouse.governance.tool_cli:audit",
        "toolgateway": "pilothouse.toolgateway.cli:toolgateway",
        "agent": "pilothouse.agents.serving.cli:agent_group",
    },
    context_settings={"help_option_names": ["-h", "--help"]},
)
@click.version_option(package_name="pilothouse")
def cli() -> None:
    """pilothouse: an inference-aware OpenAI-compatible gateway and fleet runner.

    Start with `pilothouse up`: two replicas of the embedded SmolLM2 model behind a gateway
    on http://127.0.0.1:8000/v1.
    """


def _api_key_option(f: Callable[..., None]) -> Callable[..., None]:
    return click.option(
        "--api-key",
        envvar=API_KEY_ENV,
        default=None,
        help=f"Require this key (Authorization: Bearer ...) on every /v1 route. "
        f"Also read from ${API_KEY_ENV}. /health, /ready and /metrics stay open.",
    )(f)


@cli.command()
@click.option(
    "-f",
    "--file",
    "fleet_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Fleet spec (YAML). Without it: the embedded SmolLM2 on llama.cpp.",
)
@click.option(
    "--replicas",
    type=click.IntRange(0, 64),
    default=None,
    help="Replicas per launched model (default 2, or the fleet file's value).",
)
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=None,
    help="Gateway port (default 8000, or the fleet file's value; 0 picks a free one).",
)
@click.option("--host", default=None, help="Gateway bind address (default 127.0.0.1).")
@click.option(
    "--scheduler",
    default=None,
    help="Scheduler config: a built-in name (default, round-robin, ...) or a YAML path.",
)
@_api_key_option
@click.option(
    "--log-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where replica logs go (default ~/.local/state/pilothouse/logs/<time>).",
)
@click.option(
    "--ready-timeout",
    type=float,
    default=300.0,
    show_default=True,
    help="Seconds to wait for every replica to become healthy.",
)
@click.option(
    "--executor",
    "executor_kind",
    type=click.Choice(["local", "ray"]),
    default="local",
    show_default=True,
    help="Where replicas run: child processes here, or Ray actors on a Ray cluster "
    "(needs the 'ray' extra; see docs/ray.md).",
)
@click.option(
    "--ray-address",
    default=None,
    help="With --executor ray: the cluster to join, HOST:PORT or 'auto' "
    "(default: the fleet file's ray.address, else RAY_ADDRESS, else a new local Ray).",
)
def up(
    fleet_file: Path | None,
    replicas: int | None,
    port: int | None,
    host: str | None,
    scheduler: str | None,
    api_key: str | None,
    log_dir: Path | None,
    ready_timeout: float,
    executor_kind: Literal["local", "ray"],
    ray_address: str | None,
) -> None:
    """Start a fleet's replicas and the gateway in front of them; Ctrl-C stops everything.

    The replicas are supervised: a crashed one is restarted (with backoff), autoscaled models
    follow their load (a model at zero starts on its first request, which is held), and the
    file given with -f is watched: save a change and it is applied. `pilothouse apply -f`
    applies a spec over loopback instead. With `--executor ray` the replicas are Ray actors
    on a Ray cluster, supervised the same way.
    """
    from pilothouse.runner import FleetOverrides, run_up

    overrides = FleetOverrides(
        replicas=replicas,
        port=port,
        host=host,
        scheduler=scheduler,
        api_key=api_key,
        ray_address=ray_address,
    )
    _run(run_up(fleet_file, overrides, log_dir, ready_timeout, executor_kind))


@cli.command()
@click.option(
    "-f",
    "--file",
    "fleet_file",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Fleet spec whose models list 'endpoints' (addresses of running engines).",
)
@click.option("--port", type=click.IntRange(0, 65535), default=None, help="Gateway port.")
@click.option("--host", default=None, help="Gateway bind address (default 127.0.0.1).")
@click.option("--scheduler", default=None, help="Scheduler config name or YAML path.")
@_api_key_option
def gateway(
    fleet_file: Path, port: int | None, host: str | None, scheduler: str | None, api_key: str | None
) -> None:
    """Run the gateway alone, in front of engines that are already running."""
    from pilothouse.runner import FleetOverrides, run_gateway

    overrides = FleetOverrides(port=port, host=host, scheduler=scheduler, api_key=api_key)
    _run(run_gateway(fleet_file, overrides))


@cli.command(name="apply")
@click.option(
    "-f",
    "--file",
    "fleet_file",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The new fleet spec.",
)
@click.option(
    "--url",
    default=None,
    help="Gateway of the running fleet (default: http://HOST:PORT from the file's gateway).",
)
@_api_key_option
@click.option("--timeout", type=float, default=10.0, show_default=True, help="Seconds to wait.")
def apply_command(fleet_file: Path, url: str | None, api_key: str | None, timeout: float) -> None:
    """Apply a changed fleet spec to a running `pilothouse up` (over loopback).

    Models added, removed, rescaled or re-configured roll out at once (replicas of a
    changed model are replaced one at a time); gateway settings need a restart.
    """
    from pilothouse.controlplane.apply_client import apply_file, default_url

    try:
        applied = apply_file(fleet_file, url or default_url(fleet_file), api_key, timeout)
    except ConfigError as exc:
        _fail_with(fleet_file, exc.problems if exc.path or len(exc.problems) > 1 else (str(exc),))
    except PilothouseError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"{fleet_file}: applied")
    for line in applied.actions:
        click.echo(f"  {line}")
    for line in applied.notes:
        click.echo(f"note: {line}", err=True)


@cli.command()
@click.option(
    "-f",
    "--file",
    "fleet_file",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Fleet spec (or a kind: Agent file) to check.",
)
def validate(fleet_file: Path) -> None:
    """Check a fleet spec (and its scheduler config), or an agent file (``kind: Agent``);
    print every problem with its path.

    One line per problem, ``FILE: path: message``; the exit status is 1 if there is any.
    """
    from pilothouse.config.agents import load_agent
    from pilothouse.config.fleet import load_fleet
    from pilothouse.config.loader import read_yaml
    from pilothouse.controlplane.features import pending_features
    from pilothouse.scheduling.config import resolve_config

    try:
        data = read_yaml(fleet_file)
        if isinstance(data, dict) and data.get("kind") == "Agent":
            agent = load_agent(fleet_file)
            click.echo(f"{fleet_file}: valid (agent {agent.name})")
            return
    except ConfigError as exc:
        _fail_with(fleet_file, exc.problems if exc.path else (str(exc),))
    try:
        spec = load_fleet(fleet_file)
    except ConfigError as exc:
        _fail_with(fleet_file, exc.problems if exc.path else (str(exc),))
    try:
        resolve_config(spec.gateway.scheduler)
    except ConfigError as exc:
        _fail_with(fleet_file, [f"gateway.scheduler: {p}" for p in exc.problems])
    for note in pending_features(spec):
        click.echo(f"note: {note}", err=True)
    parts = [f"{len(spec.models)} model(s)"]
    if spec.tools is not None:
        parts.append(f"{len(spec.tools.servers)} tool server(s)")
    if spec.agents:
        parts.append(f"{len(spec.agents)} agent(s)")
    click.echo(f"{fleet_file}: valid ({', '.join(parts)})")


def _fail_with(fleet_file: Path, problems: Sequence[str]) -> NoReturn:
    for problem in problems:
        click.echo(f"{fleet_file}: {problem}", err=True)
    raise SystemExit(1)


def _run(coro: Coroutine[Any, Any, None]) -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    runner: Callable[[Coroutine[Any, Any, None]], None]
    try:
        import uvloop

        runner = uvloop.run
    except ImportError:
        runner = asyncio.run
    try:
        runner(coro)
    except PilothouseError as exc:
        raise click.ClickException(str(exc)) from exc
    except KeyboardInterrupt:  # a Ctrl-C after the drain, while replicas stop
        click.echo("interrupted; replicas still running get SIGTERM as pilothouse exits", err=True)
        raise SystemExit(130) from None


def main() -> None:
    cli()
