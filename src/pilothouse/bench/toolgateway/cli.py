"""``pilothouse bench toolgateway``: the latency the governed tool gateway adds per
``tools/call``, against calling the MCP server directly (issue #13: at most 1 ms at p50)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from pilothouse.bench.cli import finish_report, run_async
from pilothouse.bench.toolgateway.results import (
    ADDED_P50_TARGET_MS,
    DIRECT,
    ToolGatewayBenchConfig,
    ToolGatewayReport,
)

if TYPE_CHECKING:
    from pilothouse.bench.toolgateway.results import Added

_REPORT_WIDTH = 140
_LABELS = {
    "direct": "direct",
    "gateway": "tool gateway",
    "passthrough": "SDK pass-through",
}


@click.command("toolgateway")
@click.option(
    "--calls",
    type=click.IntRange(1),
    default=500,
    show_default=True,
    help="Measured tools/call per worker, per round and target.",
)
@click.option(
    "-c",
    "--concurrency",
    type=click.IntRange(1, 256),
    default=1,
    show_default=True,
    help="Workers, each with its own MCP session, calling back to back.",
)
@click.option(
    "--rounds",
    type=click.IntRange(1, 50),
    default=5,
    show_default=True,
    help="Rounds of every target, interleaved; the order flips every round.",
)
@click.option(
    "--warmup",
    "warmup_calls",
    type=click.IntRange(0),
    default=20,
    show_default=True,
    help="Unmeasured calls per worker before each measured window.",
)
@click.option(
    "--passthrough/--no-passthrough",
    default=True,
    show_default=True,
    help="Also measure an SDK-only pass-through proxy, to split the added latency into "
    "the MCP SDK's share and pilothouse's.",
)
@click.option(
    "--json-out",
    "json_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Also write every number to this JSON file.",
)
@click.option("--fail-on-miss", is_flag=True, help="Exit with status 1 when the target is missed.")
def toolgateway_command(
    calls: int,
    concurrency: int,
    rounds: int,
    warmup_calls: int,
    passthrough: bool,
    json_path: Path | None,
    fail_on_miss: bool,
) -> None:
    """Measure the latency the tool gateway adds to a tools/call.

    Starts an MCP server with an echo tool, and the tool gateway in front of it with a Cedar
    policy file, approved pins and the audit log on (each a process on 127.0.0.1), then
    times calls made with the official MCP SDK client over streamable HTTP, directly and
    through the gateway, in interleaved rounds. Reports p50/p99 of each, the latency added
    and the verdict against 1 ms at p50.
    """
    config = ToolGatewayBenchConfig(
        calls=calls,
        concurrency=concurrency,
        rounds=rounds,
        warmup_calls=warmup_calls,
        passthrough=passthrough,
    )
    console = Console()
    if not console.is_terminal:
        console = Console(width=_REPORT_WIDTH)
    report = _run_with_progress(config, console)
    console.print(render_table(report))
    for line in summary_lines(report):
        console.print(line)
    finish_report(console, report.to_json(), json_path, report.passed, fail_on_miss)


def _run_with_progress(config: ToolGatewayBenchConfig, console: Console) -> ToolGatewayReport:
    from pilothouse.bench.toolgateway.run import run_toolgateway_bench

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn())
    with Progress(*columns, TimeElapsedColumn(), console=console, transient=True) as progress:
        task = progress.add_task("starting", total=None)

        def advance(description: str, done: int, total: int) -> None:
            progress.update(task, description=description, completed=done, total=total or None)

        return run_async(run_toolgateway_bench(config, advance))


def _ms(value: float) -> str:
    return "—" if math.isnan(value) else f"{value:.3f}"


def _signed(value: float) -> str:
    return "—" if math.isnan(value) else f"{value:+.3f}"


def render_table(report: ToolGatewayReport) -> Table:
    """One row per target: p50/p99, what it adds over direct calls, CPU per call."""
    c = report.config
    table = Table(
        title=f"tools/call latency, ms (c={c.concurrency}, {c.rounds} rounds x {c.calls} calls)"
    )
    for header in (
        "target",
        "calls",
        "calls/s",
        "p50",
        "p99",
        "added p50",
        "added p99",
        "proxy CPU ms/call",
        "upstream CPU ms/call",
        "errors",
    ):
        table.add_column(header, justify="left" if header == "target" else "right")
    direct = report.targets[DIRECT]
    for name, t in report.targets.items():
        is_direct = name == DIRECT
        table.add_row(
            _LABELS.get(name, name),
            f"{t.calls:,}",
            f"{t.calls_per_s:,.0f}",
            _ms(t.p50_ms),
            _ms(t.p99_ms),
            "" if is_direct else _signed(t.p50_ms - direct.p50_ms),
            "" if is_direct else _signed(t.p99_ms - direct.p99_ms),
            _ms(t.cpu_ms_per_call.get("proxy", math.nan)) if not is_direct else "",
            _ms(t.cpu_ms_per_call.get("upstream", math.nan)),
            str(t.errors),
        )
    return table


def _split(label: str, a: Added | None) -> str | None:
    if a is None:
        return None
    return f"{label}: {_signed(a.p50_ms)} ms p50, {_signed(a.p99_ms)} ms p99"


def summary_lines(report: ToolGatewayReport) -> list[str]:
    """The split of the added latency (when the pass-through ran), then the verdicts."""
    lines = [
        line
        for line in (
            _split("the MCP SDK's share (pass-through - direct)", report.sdk),
            _split("pilothouse's share (gateway - pass-through)", report.ours),
        )
        if line is not None
    ]
    for v in report.verdicts:
        mark = "[green]PASS[/green]" if v.passed else "[red]FAIL[/red]"
        value = f"{v.value:.0f}" if v.unit == "calls" else f"{v.value:.3f}"
        lines.append(f"{mark} {v.name}: {value} {v.unit} (limit {v.limit:g} {v.unit}; {v.detail})")
    return lines


__all__ = ["ADDED_P50_TARGET_MS", "render_table", "summary_lines", "toolgateway_command"]
