"""``pilothouse bench gateway-lag``: options, the table and the verdict."""

from __future__ import annotations

import os
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from pilothouse.bench.cli import finish_report
from pilothouse.bench.lag.gateway import (
    DEFAULT_MODES,
    MODES,
    GatewayLagConfig,
    GatewayLagReport,
    run_gateway_lag,
)
from pilothouse.errors import PilothouseError


@click.command(name="gateway-lag")
@click.option("--replicas", type=click.IntRange(1, 64), default=4, show_default=True)
@click.option("--requests", type=click.IntRange(1), default=256, show_default=True)
@click.option("--concurrency", type=click.IntRange(1), default=64, show_default=True)
@click.option(
    "--prompt-tokens", type=click.IntRange(2), default=6000, show_default=True,
    help="Words per prompt (about one token each): half a shared system prompt, half question.",
)  # fmt: skip
@click.option("--groups", type=click.IntRange(1), default=8, show_default=True,
              help="Distinct system prompts.")  # fmt: skip
@click.option(
    "--tokenizer", type=click.Choice(["smollm2", "dummy"]), default="smollm2", show_default=True,
    help="smollm2: the gateway uses SmolLM2's real HF tokenizer (endpoints declared vllm); "
    "dummy: the simulator's (sim endpoints, events match).",
)  # fmt: skip
@click.option(
    "--modes", default=",".join(DEFAULT_MODES), show_default=True,
    help="gateway.tokenize values to run, in order: before (worker thread), process (tokenizer "
    "process) and/or inline (old path); the first that is not inline is judged.",
)  # fmt: skip
@click.option("--target-ms", type=float, default=2.0, show_default=True,
              help="Bound on the lag p99 of the judged mode (a bucket edge).")  # fmt: skip
@click.option(
    "--pin", is_flag=True,
    help="Linux: run the gateway's event loop alone on one CPU and everything else (load "
    "generator, simulators, the gateway's tokenizer threads) on the others, as when the gateway "
    "has cores of its own.",
)  # fmt: skip
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--fail-on-miss", is_flag=True, help="Exit with status 1 when the bound is missed.")
def gateway_lag_command(
    replicas: int, requests: int, concurrency: int, prompt_tokens: int, groups: int,
    tokenizer: str, modes: str, target_ms: float, pin: bool, json_path: Path | None,
    fail_on_miss: bool,
) -> None:  # fmt: skip
    """The gateway's event-loop lag while long prompts go through it (issue #10: p99 <= 2 ms).

    Starts simulator replicas with KV events and a real gateway process (kv_events,
    precise-prefix, its lag probe on), sends the requests CONCURRENCY at a time, and reads
    pilothouse_event_loop_lag_seconds from the gateway's /metrics before and after; once per
    mode, each on a fresh stack.
    """
    chosen = tuple(m.strip() for m in modes.split(",") if m.strip())
    if not chosen or any(m not in MODES for m in chosen):
        raise click.BadParameter(
            f"a comma-separated subset of {', '.join(MODES)}", param_hint="--modes"
        )
    config = GatewayLagConfig(
        replicas=replicas, requests=requests, concurrency=concurrency,
        prompt_tokens=prompt_tokens, groups=groups, tokenizer=tokenizer, modes=chosen,
        target_ms=target_ms, pin=pin,
    )  # fmt: skip
    console = Console()
    if not console.is_terminal:
        console = Console(width=160)  # a file or pipe: keep every row on one line
    try:
        with console.status("starting") as status:
            report = run_gateway_lag(config, lambda message: status.update(message))
    except PilothouseError as exc:
        raise click.ClickException(str(exc)) from exc
    console.print(render_table(report))
    for line in verdict_lines(report):
        console.print(line)
    finish_report(console, report.to_json(), json_path, report.passed, fail_on_miss)


def render_table(report: GatewayLagReport) -> Table:
    c = report.config
    table = Table(
        title=f"gateway event-loop lag: {c.requests} requests of {c.prompt_tokens:,} tokens, "
        f"{c.concurrency} concurrent, {c.replicas} replicas, {c.tokenizer} tokenizer"
        f"{', loop pinned to its own CPU' if c.pin else ''} (ms)"
    )
    for header in ("tokenize", "samples", "lag p50", "lag p99", "lag max ≤", "ok", "errors",
                   "req/s", "latency p50", "latency p99", "load 1 min"):  # fmt: skip
        table.add_column(header, justify="left" if header == "tokenize" else "right")
    for r in report.results:
        lag = r.lag
        table.add_row(
            r.mode, f"{lag.samples:,}", f"{lag.quantile(50) * 1000:.2f}",
            f"{lag.quantile(99) * 1000:.2f}", f"{lag.max_bound() * 1000:g}", str(r.ok),
            str(r.errors), f"{r.ok / r.elapsed_s:.1f}", f"{r.latency_p50_ms:,.0f}",
            f"{r.latency_p99_ms:,.0f}", r.load_before.split()[0],
        )  # fmt: skip
    return table


def verdict_lines(report: GatewayLagReport) -> list[str]:
    c = report.config
    judged = report.judged()
    lines = [f"{os.cpu_count()} CPUs; lag = overshoot of a {c.interval_s * 1000:g} ms timer in "
             "the gateway process (p50/p99 interpolated in the histogram's buckets)"]  # fmt: skip
    if judged is None:
        return [*lines, "no 'before' or 'process' run: nothing judged"]
    mark = "[green]PASS[/green]" if report.passed else "[red]FAIL[/red]"
    lines.append(
        f"{mark} event-loop lag p99, tokenizing before the decision ({judged.mode}): "
        f"{judged.lag.quantile(99) * 1000:.2f} ms (limit {c.target_ms:g} ms; "
        f"{judged.errors} errors)"
    )
    return lines
