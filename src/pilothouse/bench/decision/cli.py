"""``pilothouse bench decision``: options, the results table and the verdict lines."""

from __future__ import annotations

import math
import os
import platform
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from pilothouse.bench.cli import finish_report
from pilothouse.bench.decision.run import (
    DEFAULT_CONFIGS,
    DecisionConfig,
    DecisionReport,
    Row,
    run_decision,
)
from pilothouse.bench.decision.tokens import TOKENIZERS
from pilothouse.errors import PilothouseError

_REPORT_WIDTH = 200


@click.command(name="decision")
@click.option(
    "--replicas",
    type=click.IntRange(1, 4096),
    default=64,
    show_default=True,
    help="Endpoints in the pool (every decision scores all of them).",
)
@click.option(
    "--blocks",
    type=click.IntRange(0),
    default=500_000,
    show_default=True,
    help="Blocks to fill the prefix index with, summed over the replicas.",
)
@click.option(
    "--requests",
    type=click.IntRange(1),
    default=2000,
    show_default=True,
    help="Timed decisions per repeat (fresh requests each time).",
)
@click.option(
    "--warmup",
    type=click.IntRange(0),
    default=200,
    show_default=True,
    help="Untimed decisions first.",
)
@click.option(
    "--repeats",
    type=click.IntRange(1, 50),
    default=3,
    show_default=True,
    help="Timed passes per config; the table pools them and lists each pass's p99.",
)
@click.option(
    "--config",
    "configs",
    multiple=True,
    metavar="NAME-OR-PATH",
    help="Scheduler config, repeatable: a built-in name, a YAML path, or "
    "'precise-prefix' (default with approx-prefix swapped for precise-prefix). "
    f"Default: {', '.join(DEFAULT_CONFIGS)}.",
)
@click.option(
    "--prompt-tokens",
    type=(click.IntRange(16), click.IntRange(16)),
    default=(1024, 8192),
    show_default=True,
    metavar="MIN MAX",
    help="Range of prompt lengths in tokens.",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Workload seed.")
@click.option(
    "--target-us",
    type=click.FloatRange(0, min_open=True),
    default=1000.0,
    show_default=True,
    help="The p99 target per decision, in microseconds.",
)
@click.option(
    "--tokenizer",
    type=click.Choice(TOKENIZERS),
    default="dummy",
    show_default=True,
    help="precise-prefix's tokenizer: the simulator's, or the embedded SmolLM2's real "
    "Hugging Face tokenizer (extras hf and embedded; prompts of English words).",
)
@click.option(
    "--lag-concurrency",
    type=click.IntRange(0),
    default=0,
    show_default=True,
    help="Also measure the event loop's lag (1 ms timer overshoot) while this many "
    "precise-prefix requests are prepared and decided concurrently: tokenizing in the "
    "producer's worker vs inline in the decision (0: skip).",
)
@click.option(
    "--lag-requests",
    type=click.IntRange(1),
    default=256,
    show_default=True,
    help="Requests per event-loop lag run.",
)
@click.option("--no-memory", is_flag=True, help="Skip the index memory estimate (a walk).")
@click.option(
    "--json",
    "json_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Also write every number to this JSON file.",
)
@click.option("--fail-on-miss", is_flag=True, help="Exit with status 1 when a target is missed.")
def decision_command(
    replicas: int,
    blocks: int,
    requests: int,
    warmup: int,
    repeats: int,
    configs: tuple[str, ...],
    prompt_tokens: tuple[int, int],
    seed: int,
    target_us: float,
    tokenizer: str,
    lag_concurrency: int,
    lag_requests: int,
    no_memory: bool,
    json_path: Path | None,
    fail_on_miss: bool,
) -> None:
    """Time one scheduling decision with a large prefix index (issue #4: p99 <= 1 ms).

    Builds each config's scheduler as the gateway does, fills its prefix index (routing
    history, or KV events for precise-prefix) to --blocks blocks over --replicas replicas,
    then times Scheduler.schedule over 1-8 k-token prompts (shared-prefix hits,
    continuations, misses) in wall-clock and thread CPU time.
    """
    low, high = sorted(prompt_tokens)
    config = DecisionConfig(
        replicas=replicas, blocks=blocks, requests=requests, warmup=warmup, repeats=repeats,
        configs=configs or DEFAULT_CONFIGS, prompt_tokens=(low, high), seed=seed,
        memory=not no_memory, target_us=target_us, tokenizer=tokenizer,
        lag_concurrency=lag_concurrency, lag_requests=lag_requests,
    )  # fmt: skip
    console = Console()
    if not console.is_terminal:
        console = Console(width=_REPORT_WIDTH)  # a file or pipe: keep every row on one line
    try:
        with console.status("starting") as status:
            report = run_decision(config, lambda message: status.update(message))
    except (PilothouseError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc
    console.print(render_table(report))
    console.print(
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}; {tokenizer} tokenizer; "
        f"prompts {low:,}-{high:,} tokens; wall clock = time.perf_counter_ns around "
        "Scheduler.schedule, CPU = this thread's CPU time (excludes time other processes "
        "held the core)"
    )
    for name, plugins in {r.config: r.plugins for r in report.rows}.items():
        console.print(f"{name}: {plugins}")
    for line in verdict_lines(report):
        console.print(line)
    finish_report(console, report.to_json(), json_path, report.passed, fail_on_miss)


def _us(value: float) -> str:
    return "—" if math.isnan(value) else f"{value:,.0f}"


def _kinds(row: Row) -> str:
    total = sum(row.kinds.values()) or 1
    return " / ".join(f"{100 * n / total:.0f}% {kind}" for kind, n in sorted(row.kinds.items()))


def render_table(report: DecisionReport) -> Table:
    """One row per config (a precise-prefix config: with, without and only the tokenizer)."""
    c = report.config
    table = Table(
        title=f"scheduling decision: {c.replicas} replicas, {c.blocks:,} blocks asked, "
        f"{c.requests:,} decisions x {c.repeats} repeats (µs)"
    )
    headers = ("config", "replicas", "indexed blocks", "distinct keys", "index MiB",
               "decisions", "p50", "p90", "p99", "max", "CPU p50", "CPU p99",
               "p99 per repeat", "other load")  # fmt: skip
    for header in headers:
        table.add_column(header, justify="left" if header == "config" else "right", no_wrap=True)
    for row in report.rows:
        s = row.series
        table.add_row(
            row.label,
            str(c.replicas),
            f"{row.blocks:,}" if row.has_index else "—",
            "—" if row.distinct_keys is None else f"{row.distinct_keys:,}",
            "—" if row.index_mib is None else f"{row.index_mib:.0f}",
            f"{s.count():,}",
            *(_us(s.wall(q)) for q in (50, 90, 99, 100)),
            _us(s.cpu(50)),
            _us(s.cpu(99)),
            " ".join(_us(p) for p in s.repeat_p99()),
            "—" if math.isnan(s.other_load) else f"{s.other_load:.2f}",
        )
    return table


def verdict_lines(report: DecisionReport) -> list[str]:
    """One line per timed config: PASS/FAIL against the p99 target."""
    c = report.config
    lines = []
    for v in report.verdicts():
        mark = "[green]PASS[/green]" if v.passed else "[red]FAIL[/red]"
        lines.append(
            f"{mark} decision p99 {v.label}: {v.wall_p99_us:,.0f} µs "
            f"(limit {c.target_us:,.0f} µs at {c.replicas} replicas, {c.blocks:,} blocks; "
            f"{v.detail})"
        )
    lag = report.loop_lag
    if lag is not None:
        for mode, stats in (("worker", lag.worker), ("inline", lag.inline)):
            lines.append(
                f"event-loop lag, tokenizing {mode}, {lag.concurrency} concurrent: p50 "
                f"{stats.p50_ms:.2f} ms, p99 {stats.p99_ms:.2f} ms, max {stats.max_ms:.2f} ms "
                f"({stats.samples:,} samples of a 1 ms timer)"
            )
        lines.append(f"event-loop lag p99, inline / worker: {lag.p99_ratio:.1f}x")
    kinds = next((r for r in report.rows if r.kinds), None)
    if kinds is not None:
        lines.append(f"requests: {_kinds(kinds)}")
    return lines
