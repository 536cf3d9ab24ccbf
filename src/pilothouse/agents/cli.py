"""``pilothouse agent run`` and ``agent runs list|show|resume``: an agent in the terminal.

(The ``agent`` group is :func:`pilothouse.agents.serving.cli.agent_group`, which also holds
``agent serve``; these commands are its lazy members.)

``pilothouse agent run -f FILE [--agent NAME] "task"`` runs one agent of a fleet (or a
``kind: Agent`` file) against the gateway and the tool gateway with the agent's own key,
printing each step as it is persisted. Exit status: 0 completed, 1 failed, 3 over budget,
4 stopped waiting for an approval (``--no-wait``), 130 interrupted (Ctrl-C: the run stays
in the store, resumable with ``pilothouse agent runs resume ID``), 2 bad input.
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import json
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any, TypeVar

import click
from rich.console import Console
from rich.markup import escape

from pilothouse.agents.ports import RunResult, Step
from pilothouse.agents.runtime import summarize
from pilothouse.agents.setup import agent_keys, build_runtime, load_target, open_book
from pilothouse.config.governance import GovernanceSpec
from pilothouse.errors import BadRequest, ConfigError, NotFound, PilothouseError

API_KEY_ENV = "PILOTHOUSE_API_KEY"
EXIT = {"completed": 0, "failed": 1, "budget_exceeded": 3, "waiting_approval": 4, "running": 1}
F = TypeVar("F", bound=Callable[..., Any])
_SHOWN = 300


def _store_options(command: F) -> F:
    command = click.option(
        "--state-dir",
        type=click.Path(file_okay=False, path_type=Path),
        help="State directory (default store, agent key files); default: the fleet's, "
        "else $XDG_STATE_HOME/pilothouse.",
    )(command)
    return click.option(
        "--store", "store_url", metavar="URL", help="SQLAlchemy URL of the governance store."
    )(command)


def _connection_options(command: F) -> F:
    for option in reversed(
        [
            click.option(
                "-f",
                "--file",
                "spec_file",
                required=True,
                type=click.Path(dir_okay=False, path_type=Path),
                help="Fleet spec with agents:, or a kind: Agent file.",
            ),
            click.option("--agent", "agent_name", help="Which agent of the fleet."),
            click.option("--gateway", help="Gateway URL (default: the fleet's gateway)."),
            click.option("--tools", "tools_url", help="Tool gateway /mcp URL."),
            click.option(
                "--key",
                envvar=API_KEY_ENV,
                help=f"API key for every agent; or ${API_KEY_ENV}. "
                "Default: each agent's own key, made on first start.",
            ),
            click.option("--owner", help="Who answers for a new agent key (default: $USER)."),
            click.option(
                "--no-wait", is_flag=True, help="Stop (exit 4) instead of waiting for approvals."
            ),
            click.option(
                "--poll",
                type=float,
                default=1.0,
                show_default=True,
                help="Seconds between looks at a pending approval.",
            ),
            click.option("--json", "as_json", is_flag=True, help="One JSON object per step."),
        ]
    ):
        command = option(command)
    return _store_options(command)


@click.command("run")
@_connection_options
@click.option("--run-id", help="Id of the run (a known id resumes that run).")
@click.argument("task")
def run_command(run_id: str | None, task: str, **options: Any) -> None:
    """Run the agent on TASK, printing each step as it happens."""
    _drive(task, run_id, **options)


@click.group("runs")
def runs() -> None:
    """The runs in the governance store."""


@runs.command("list")
@_store_options
@click.option(
    "-f",
    "--file",
    "spec_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Fleet spec whose gateway.governance names the store.",
)
@click.option("--agent", "agent_name", help="Only this agent's runs.")
@click.option("--limit", type=click.IntRange(1, 10_000), default=50, show_default=True)
def runs_list(
    store_url: str | None,
    state_dir: Path | None,
    spec_file: Path | None,
    agent_name: str | None,
    limit: int,
) -> None:
    """The latest runs (sub-agents' runs are shown by `runs show`)."""
    with _errors():
        store, book, _ = open_book(_governance(spec_file), store_url, state_dir)
        try:
            found = book.list_runs(agent_name, limit=limit)
        finally:
            store.close()
    console = Console()
    for r in found:
        waiting = f" (approval {r.pending_approval})" if r.pending_approval else ""
        console.print(f"{r.id}  {r.agent}  {r.status}{waiting}  {escape(_short(r.task, 60))}")
    if not found:
        console.print("no runs")


@runs.command("show")
@_store_options
@click.option(
    "-f",
    "--file",
    "spec_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Fleet spec whose gateway.governance names the store.",
)
@click.option("--json", "as_json", is_flag=True, help="As JSON.")
@click.argument("run_id")
def runs_show(
    store_url: str | None,
    state_dir: Path | None,
    spec_file: Path | None,
    as_json: bool,
    run_id: str,
) -> None:
    """A run's steps (its sub-agents' included), what it spent, and where it stands."""
    from pilothouse.agents.journal import as_step

    with _errors():
        store, book, _ = open_book(_governance(spec_file), store_url, state_dir)
        try:
            run = book.get_run(run_id)
            lease = book.lease(run_id)
            if lease is not None and lease[1] <= time.time():
                lease = None  # it ran out: nobody drives the run
            steps = [as_step(s) for s in book.steps(run_id)]
            children = [
                r
                for r in book.list_runs(children=True, limit=10_000)
                if r.id.startswith(run_id + ".")
            ]
            for child in sorted(children, key=lambda r: r.id):
                steps.extend(as_step(s) for s in book.steps(child.id))
            result = summarize(book, run_id)
        finally:
            store.close()
    if as_json:
        click.echo(
            json.dumps(
                {
                    "run": asdict(run),
                    "result": asdict(result),
                    "steps": [asdict(s) for s in steps],
                    "driven_by": None if lease is None else {"owner": lease[0], "until": lease[1]},
                },
                default=str,
            )
        )
        return
    console = Console()
    console.print(f"run {run.id} of agent {run.agent}: {escape(run.task)}")
    if lease is not None:
        left = max(0.0, lease[1] - time.time())
        console.print(f"being run by {escape(lease[0])} (its hold is renewed while it runs; "
                      f"{left:.0f} s left of it)")  # fmt: skip
    for step in sorted(steps, key=lambda s: (s.run_id, s.index)):
        _print(console, step)
    _summary(console, result)


@runs.command("resume")
@_connection_options
@click.argument("run_id")
def runs_resume(run_id: str, **options: Any) -> None:
    """Go on with a run where it stopped (after a crash, Ctrl-C, a failure of its gateways
    or a wait for approval); tool calls already done are not made again."""
    _drive("", run_id, **options)


# -- driving a run ------------------------------------------------------------------------


def _drive(
    task: str,
    run_id: str | None,
    *,
    spec_file: Path,
    agent_name: str | None,
    gateway: str | None,
    tools_url: str | None,
    key: str | None,
    owner: str | None,
    no_wait: bool,
    poll: float,
    as_json: bool,
    store_url: str | None,
    state_dir: Path | None,
) -> None:
    console = Console(highlight=False)
    run_id = run_id or f"run_{secrets.token_hex(8)}"  # known before it starts: for resume
    with _errors():
        target = load_target(spec_file, agent_name, gateway, tools_url)
        store, book, state = open_book(target.governance, store_url, state_dir)
        try:
            known = book.run(run_id)
            if known is not None and task and task != known.task:
                raise BadRequest(
                    f"run {run_id} was started with another task; resume it "
                    f"with: pilothouse agent runs resume {run_id}"
                )
            keys, made = agent_keys(target, store, state, key, owner or _user())
            if made:  # gateways learn of a new key within sync_interval_s
                time.sleep(2 * target.governance.sync_interval_s + 0.1)
            runtime = build_runtime(target, book, keys, wait_for_approval=not no_wait, poll_s=poll)

            async def main() -> RunResult:
                async for step in runtime.run(task, run_id=run_id):
                    if as_json:
                        click.echo(json.dumps(asdict(step)))
                    else:
                        _print(console, step)
                return await runtime.result(run_id)

            try:
                result = asyncio.run(main())
                if runtime.tracing is not None:
                    runtime.tracing.shutdown()  # export the run's spans before exiting
            except KeyboardInterrupt:
                click.echo(
                    f"interrupted; resume with: pilothouse agent runs resume {run_id}"
                    f" -f {spec_file}",
                    err=True,
                )
                raise SystemExit(130) from None
        finally:
            store.close()
    if not as_json:
        _summary(console, result)
    raise SystemExit(EXIT.get(result.status, 1))


def _print(console: Console, step: Step) -> None:
    depth = "  " * step.run_id.count(".")
    head = f"{depth}[dim]{step.run_id}#{step.index}[/dim]"
    if step.kind == "model":
        called = json.loads(step.arguments or "[]")
        what = f"calls {', '.join(called)}" if called else _short(step.content)
        console.print(f"{head} [cyan]model[/cyan] {escape(what)} [dim]({step.tokens} tokens)[/dim]")
    elif step.kind in ("tool", "delegate"):
        if step.state != "done":
            console.print(f"{head} [yellow]{step.kind}[/yellow] {step.name} …")
            return
        console.print(
            f"{head} [green]{step.kind}[/green] {step.name} "
            f"{escape(_short(step.arguments, 80))} → {escape(_short(step.content))}"
        )
    elif step.kind == "approval":
        console.print(
            f"{head} [magenta]waiting for approval {step.approval_id}[/magenta] of "
            f"{step.name}: pilothouse approvals approve {step.approval_id} --by NAME"
        )
    else:
        console.print(f"{head} [bold]final[/bold] {escape(step.content)}")


def _summary(console: Console, result: RunResult) -> None:
    usage = ", ".join(f"{k} {v:g}" for k, v in result.usage.items())
    console.print(f"run {result.run_id}: [bold]{result.status}[/bold] ({usage})")


def _short(text: str, limit: int = _SHOWN) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "pilothouse"


def _governance(spec_file: Path | None) -> GovernanceSpec:
    if spec_file is None:
        return GovernanceSpec()
    data = _read(spec_file)
    if isinstance(data, dict) and data.get("kind") == "Agent":
        return GovernanceSpec()
    from pilothouse.config.fleet import load_fleet

    return load_fleet(spec_file).gateway.governance or GovernanceSpec()


def _read(path: Path) -> object:
    from pilothouse.config.loader import read_yaml

    return read_yaml(path)


@contextlib.contextmanager
def _errors() -> Iterator[None]:
    """Every pilothouse error as one line on stderr and an exit status (2: bad input)."""
    try:
        yield
    except ConfigError as exc:
        for line in exc.problems:
            click.echo(f"error: {line}", err=True)
        raise SystemExit(2) from None
    except (BadRequest, NotFound) as exc:
        click.echo(f"error: {exc}", err=True)
        raise SystemExit(2) from None
    except PilothouseError as exc:
        click.echo(f"error: {exc}", err=True)
        raise SystemExit(1) from None
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        raise SystemExit(130) from None
