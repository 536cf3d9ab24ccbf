"""``pilothouse bench overhead``: the gateway's own cost against the same mock upstream."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from pilothouse.bench.cli import finish_report, run_async
from pilothouse.bench.overhead.baseline import render_baseline_table
from pilothouse.bench.overhead.tracing import render_tracing_table, tracing_lines

if TYPE_CHECKING:  # the overhead harness (aiohttp, yaml) loads only when its command runs
    from pilothouse.bench.overhead.run import (
        LevelResult,
        OverheadConfig,
        OverheadReport,
        TargetStats,
    )

_REPORT_WIDTH = 160
_MODES = {"both": (False, True), "plain": (False,), "stream": (True,)}


@click.command()
@click.option(
    "-c",
    "--concurrency",
    "concurrency",
    type=click.IntRange(1, 4096),
    multiple=True,
    default=(1, 16, 64),
    show_default=True,
    help="Closed-loop workers; repeat the option for several levels.",
)
@click.option(
    "--mode",
    type=click.Choice(sorted(_MODES)),
    default="both",
    show_default=True,
    help="Non-streamed (plain) requests, streamed ones, or both.",
)
@click.option(
    "--warmup",
    type=click.FloatRange(0, 600),
    default=1.0,
    show_default=True,
    help="Seconds of load before each measured window.",
)
@click.option(
    "--duration",
    type=click.FloatRange(0.1, 600),
    default=5.0,
    show_default=True,
    help="Seconds in each measured window.",
)
@click.option(
    "--requests",
    type=click.IntRange(1),
    default=None,
    help="Measure this many requests per window instead of --duration seconds.",
)
@click.option(
    "--rounds",
    type=click.IntRange(1, 20),
    default=1,
    show_default=True,
    help="Repeat every level; results are pooled (the direct/gateway order flips).",
)
@click.option(
    "--retries",
    type=click.IntRange(0, 10),
    default=2,
    show_default=True,
    help="Repeat a direct/gateway pair this often while other processes disturb it "
    "(more than 0.15 cores busy outside the benchmark).",
)
@click.option(
    "--scheduler",
    default="default",
    show_default=True,
    help="The gateway's scheduler config: a built-in name or a YAML path.",
)
@click.option(
    "--json",
    "json_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Also write every number to this JSON file.",
)
@click.option(
    "--peer",
    type=click.Choice(["vllm-router"]),
    default=None,
    help="Also measure this peer router in front of the same mock, in the same run "
    "(vllm-router: pip install 'pilothouse[peers]').",
)
@click.option(
    "--governance",
    is_flag=True,
    help="Also measure a governed gateway (API key auth, rate limits, token and money "
    "budgets, the ledger; SQLite store in a temporary directory) in the same run, and judge "
    "its CPU per request against the plain gateway's: at most 1.25x at every level.",
)
@click.option(
    "--redis",
    is_flag=True,
    help="With --governance, also measure a gateway keeping limits and budgets in a "
    "redis-server the bench starts (reported, not judged; needs redis-server installed).",
)
@click.option(
    "--tracing",
    is_flag=True,
    help="Also measure a gateway exporting an OpenTelemetry span of every request over OTLP "
    "to a receiver the bench starts, in the same run (reported, not judged: the added CPU "
    "per request).",
)
@click.option(
    "--baseline-rev",
    metavar="REV",
    help="Also measure this gateway's own code at git revision REV (from the checkout it runs "
    "from), interleaved in the same run: what a change costs (e.g. tracing off).",
)
@click.option("--fail-on-miss", is_flag=True, help="Exit with status 1 when a target is missed.")
def overhead(
    concurrency: tuple[int, ...],
    mode: str,
    warmup: float,
    duration: float,
    requests: int | None,
    rounds: int,
    retries: int,
    scheduler: str,
    json_path: Path | None,
    peer: str | None,
    governance: bool,
    redis: bool,
    tracing: bool,
    baseline_rev: str | None,
    fail_on_miss: bool,
) -> None:
    """Measure the gateway's overhead against direct calls to a fast mock engine.

    Starts a mock OpenAI upstream and a gateway in front of it (both as separate processes on
    127.0.0.1), then at each concurrency level, streamed and not, runs a closed-loop load
    directly and through the gateway. Reports requests/s, p50/p99 latency, the latency the
    gateway adds, and the gateway's CPU time per request, with a verdict per target.
    With --governance, a governed gateway (and with --redis one sharing state through Redis)
    is measured beside it, interleaved the same way: the cost of auth + limits + ledger.
    With --tracing, a gateway exporting OTLP traces is measured beside it the same way; with
    --baseline-rev, the gateway's code at another commit.
    """
    from pilothouse.bench.overhead.governance import redis_lines
    from pilothouse.bench.overhead.run import OverheadConfig

    if redis and not governance:
        raise click.UsageError("--redis measures a governed gateway: add --governance")
    config = OverheadConfig(
        concurrency=tuple(dict.fromkeys(concurrency)),
        streams=_MODES[mode],
        warmup_s=warmup,
        duration_s=None if requests else duration,
        requests=requests,
        rounds=rounds,
        retries=retries,
        scheduler=scheduler,
        peer=peer,
        governance=governance,
        redis=redis,
        tracing=tracing,
        baseline_rev=baseline_rev,
    )
    console = Console()
    if not console.is_terminal:
        console = Console(width=_REPORT_WIDTH)  # a file or pipe: keep every row on one line
    report = _run_with_progress(config, console)
    console.print(render_table(report))
    governed = render_governance_table(report)
    if governed is not None:
        console.print(governed)
    baseline = render_baseline_table(report)
    if baseline is not None:
        console.print(baseline)
    traced = render_tracing_table(report)
    if traced is not None:
        console.print(traced)
    for line in verdict_lines(report):
        console.print(line)
    for line in redis_lines(report.levels) + tracing_lines(report):
        console.print(f"[cyan]INFO[/cyan] {line}")
    if report.other_load_cores > report.config.max_other_load:
        console.print(
            f"[yellow]warning[/yellow]: other processes kept up to "
            f"{report.other_load_cores:.2f} cores busy during the measurement; "
            "rerun on a quiet machine for latency and requests/s figures"
        )
    finish_report(console, report.to_json(), json_path, report.passed, fail_on_miss)


def _run_with_progress(config: OverheadConfig, console: Console) -> OverheadReport:
    from pilothouse.bench.overhead.run import run_overhead

    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task("starting mock upstream and gateway", total=None)

        def advance(description: str, done: int, total: int) -> None:
            progress.update(task, description=description, completed=done, total=total)

        return run_async(run_overhead(config, advance))


def _ms(value: float) -> str:
    return "—" if math.isnan(value) else f"{value:.2f}"


def _latency(stats: TargetStats) -> str:
    return f"{_ms(stats.p50_ms)}/{_ms(stats.p99_ms)}"


def render_table(report: OverheadReport) -> Table:
    """One row per (mode, concurrency) level."""
    table = Table(
        title="gateway overhead: direct calls to the mock upstream vs through the gateway"
    )
    for header in (
        "mode",
        "conc",
        "rps direct",
        "rps gateway",
        "p50/p99 ms direct",
        "p50/p99 ms gateway",
        "added p50 ms",
        "added p99 ms",
        "gateway CPU ms/req",
        "errors",
    ):
        table.add_column(header, justify="left" if header == "mode" else "right")
    if report.config.peer:
        for header in ("rps peer", "p50/p99 ms peer", "added p99 ms peer", "peer CPU ms/req"):
            table.add_column(header, justify="right")
    for lv in report.levels:
        table.add_row(
            "stream" if lv.stream else "plain",
            str(lv.concurrency),
            f"{lv.direct.rps:,.0f}",
            f"{lv.gateway.rps:,.0f}",
            _latency(lv.direct),
            _latency(lv.gateway),
            f"{lv.added_p50_ms:+.2f}",
            f"{lv.added_p99_ms:+.2f}",
            f"{lv.gateway_cpu_ms:.3f}",
            str(sum(t.errors for t in lv.targets)),
            *_peer_cells(lv),
        )
    return table


def render_governance_table(report: OverheadReport) -> Table | None:
    """With --governance: the plain gateway beside the governed one(s), one row per level."""
    if not report.config.governance:
        return None
    redis = report.config.redis
    table = Table(title="governance overhead: the same gateway without and with governance")
    headers = ["mode", "conc", "rps gateway", "rps governed", "p50/p99 ms governed"]
    headers += ["gateway CPU ms/req", "governed CPU ms/req", "governance ms/req"]
    headers += ["governed/gateway"]
    if redis:
        headers += ["rps governed-redis", "governed-redis CPU ms/req", "redis-server ms/req"]
        headers += ["governed-redis/gateway"]
    for header in headers:
        table.add_column(header, justify="left" if header == "mode" else "right")
    for lv in report.levels:
        if lv.governed is None:
            continue
        cells = [
            "stream" if lv.stream else "plain",
            str(lv.concurrency),
            f"{lv.gateway.rps:,.0f}",
            f"{lv.governed.rps:,.0f}",
            _latency(lv.governed),
            f"{lv.gateway_cpu_ms:.3f}",
            f"{lv.governed_cpu_ms:.3f}",
            f"{lv.governance_cpu_ms:+.3f}",
            f"{lv.governed_ratio:.3f}x",
        ]
        if lv.governed_redis is not None:
            cells += [
                f"{lv.governed_redis.rps:,.0f}",
                f"{lv.governed_redis_cpu_ms:.3f}",
                f"{lv.redis_cpu_ms:.3f}",
                f"{lv.governed_redis_ratio:.3f}x",
            ]
        table.add_row(*cells)
    return table


def _peer_cells(lv: LevelResult) -> list[str]:
    if lv.peer is None:
        return []
    return [
        f"{lv.peer.rps:,.0f}",
        _latency(lv.peer),
        f"{lv.peer_added_p99_ms:+.2f}",
        f"{lv.peer_cpu_ms:.3f}",
    ]


def verdict_lines(report: OverheadReport) -> list[str]:
    """One line per target: PASS/FAIL, the measured value, the limit and where."""
    lines = []
    for v in report.verdicts:
        mark = "[green]PASS[/green]" if v.passed else "[red]FAIL[/red]"
        value = f"{v.value:.0f}" if v.unit == "requests" else f"{v.value:.3f}"
        if v.unit == "x":
            lines.append(f"{mark} {v.name}: {value}x (limit {v.limit:g}x; {v.detail})")
            continue
        lines.append(f"{mark} {v.name}: {value} {v.unit} (limit {v.limit:g} {v.unit}; {v.detail})")
    return lines
