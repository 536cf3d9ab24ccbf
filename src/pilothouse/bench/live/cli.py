"""``pilothouse bench live``: the benchmark workloads over HTTP, against a URL or a launched fleet.

Two ways to run it:

- ``--url URL``: any OpenAI-compatible server (pilothouse's gateway, another router, one
  engine); ``--metrics-url`` (repeatable) names the engines' ``/metrics`` for the cache hit
  rate and the queue samples;
- ``--launch-sim N``: start N ``engine sim`` replicas (``--preset``, ``--time-scale``) and,
  per entry of ``--policies`` (pilothouse scheduler configs, or ``vllm-router:POLICY``
  peers), the router in front of them; everything is stopped at the end.

Writes ``results.json`` (``bench sim``'s schema, :mod:`.live_report`) and ``report.md``.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from pilothouse.bench.live.fleet import run_launched
from pilothouse.bench.live.plan import LiveOptions, LivePlan, build_plan, live_report
from pilothouse.bench.live.report import LiveReport, write_report
from pilothouse.bench.live.run import LiveRun, run_target
from pilothouse.bench.workload_options import workload_options
from pilothouse.errors import PilothouseError
from pilothouse.sim.presets import DEFAULT_PRESET, PRESETS

_INTERRUPTED = 130


async def _execute(plan: LivePlan, console: Console) -> list[LiveRun]:
    targets = len(plan.policies) if plan.fleet is not None else 1
    total = plan.settings.requests * len(plan.levels) * targets
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn())
    with Progress(*columns, TimeElapsedColumn(), console=console) as bar:
        task = bar.add_task("starting", total=total)

        def advance(count: int) -> None:
            bar.advance(task, count)

        def on_target(name: str) -> None:
            bar.update(task, description=f"requests via {name}")

        if plan.fleet is None:
            assert plan.target is not None
            on_target(plan.target.name)
            return await run_target(plan.target, plan.settings, plan.workload, plan.levels, advance)
        return await run_launched(
            plan.fleet,
            plan.policies,
            plan.settings,
            plan.workload,
            plan.levels,
            plan.options.out / "work",
            scrape_interval_s=plan.options.scrape_interval,
            progress=advance,
            on_target=on_target,
        )


def _write(report: LiveReport, out: Path, plots: bool, console: Console) -> list[str]:
    try:
        return write_report(out, report, plots)
    except ImportError:
        console.print("[yellow]matplotlib is not installed: no plots[/yellow]")
        return write_report(out, report, False)


@click.command("live", context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--url", default=None, help="OpenAI-compatible base URL to measure.")
@click.option(
    "--metrics-url", "metrics_urls", multiple=True, metavar="URL",
    help="An engine's Prometheus /metrics behind --url (repeatable): cache hits, queues.",
)  # fmt: skip
@click.option(
    "--reset-prefix-cache", is_flag=True,
    help="POST /reset_prefix_cache on every --metrics-url host before each level.",
)  # fmt: skip
@click.option("--label", default="live", show_default=True, help="Name of --url in the report.")
@click.option(
    "--launch-sim",
    type=click.IntRange(1, 64),
    default=None,
    metavar="N",
    help="Launch N engine sim replicas and one router per --policies entry.",
)
@click.option(
    "--preset",
    type=click.Choice(sorted(PRESETS)),
    default=None,
    help=f"Engine model of the launched replicas (default {DEFAULT_PRESET}).",
)
@click.option(
    "--engine-arg", "engine_args", multiple=True, metavar="FLAG=VALUE",
    help="With --launch-sim: an extra engine sim flag, e.g. num-gpu-blocks-override=1024.",
)  # fmt: skip
@click.option(
    "--time-scale", type=click.FloatRange(min=0, min_open=True), default=1.0, show_default=True,
    help="Simulated seconds per wall second of the sim engines; times are reported simulated.",
)  # fmt: skip
@click.option(
    "--policies", default="default", show_default=True,
    help="With --launch-sim: scheduler configs (names or YAML) and vllm-router:POLICY peers.",
)  # fmt: skip
@click.option(
    "--scrape-interval",
    type=click.FloatRange(min=0.0),
    default=0.05,
    show_default=True,
    help="Gateway metrics probe, in simulated seconds.",
)
@workload_options
@click.option("--qps", default=None, metavar="LIST", help="Open loop: comma-separated rates.")
@click.option(
    "--concurrency", default=None, metavar="LIST", help="Closed loop: comma-separated workers."
)
@click.option(
    "--requests", type=click.IntRange(1), default=200, show_default=True, help="Requests per level."
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--model", default=None, help="Model name (default: the first of /v1/models).")
@click.option(
    "--api",
    type=click.Choice(["completions", "chat"]),
    default="completions",
    show_default=True,
    help="Send the prompt text to /v1/completions or as chat.",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=1),
    default=600.0,
    show_default=True,
    help="Wall seconds before one request counts as failed.",
)
@click.option(
    "--sample-interval",
    type=click.FloatRange(min=0.05),
    default=0.5,
    show_default=True,
    help="Wall seconds between queue samples of the engines.",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("bench-out/live"),
    show_default=True,
)
@click.option("--no-plots", is_flag=True, help="Skip the PNG plots (no matplotlib needed).")
def live_command(**options: Any) -> None:
    """Send a benchmark workload over HTTP and report it like `bench sim`.

    Against --url (any OpenAI-compatible server), or against a fleet it launches with
    --launch-sim N: N engine sim replicas and, per --policies entry, pilothouse's gateway
    with that scheduler config or a vllm-router:POLICY peer. Writes results.json (bench
    sim's schema) and report.md into --out.
    """
    from pilothouse.bench.cli import run_async  # the bench group's uvloop + SIGTERM runner

    console = Console(stderr=True)
    try:
        plan = build_plan(LiveOptions(**options))
    except (PilothouseError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc
    try:
        runs = run_async(_execute(plan, console))
    except (asyncio.CancelledError, KeyboardInterrupt):  # SIGTERM / Ctrl-C: children stopped
        console.print("[yellow]interrupted: every process it started was stopped[/yellow]")
        raise SystemExit(_INTERRUPTED) from None
    out = plan.options.out
    names = _write(live_report(plan, runs), out, not plan.options.no_plots, console)
    for live in runs:
        failed = live.run.result.metrics.failed
        if failed:
            console.print(f"[yellow]{live.run.policy} at {live.level.label}: {failed} failed")
    written = f"wrote {out / 'results.json'}, {out / 'report.md'}"
    console.print(written + (f" and {len(names)} plots" if names else ""))


if __name__ == "__main__":  # python -m pilothouse.bench.live.cli (before it is registered)
    live_command()
