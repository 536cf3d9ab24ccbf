"""Writing a live sweep: ``results.json`` in ``bench sim``'s schema, and ``report.md``.

``results.json`` has every key of :mod:`pilothouse.bench.report`'s schema and a few more:
top-level ``"mode": "live"``, ``"target"`` and ``"time_scale"``; a closed-loop run adds
``"concurrency"``, and its ``"qps"`` is the request rate it achieved (completed requests /
its duration), since no rate was offered. All times are in simulated seconds when
``time_scale`` is not 1 (see :mod:`pilothouse.bench.live.run`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import orjson

from pilothouse.bench.live.run import LiveRun
from pilothouse.bench.report import (
    PolicyRun,
    SweepReport,
    comparison_table,
    policy_table,
    run_record,
)

_COMPARED = (
    ("TTFT p50 (s)", "ttft_p50_s", "{:.3f}"),
    ("TTFT p90 (s)", "ttft_p90_s", "{:.3f}"),
    ("Output throughput (tok/s)", "output_tok_s", "{:,.0f}"),
    ("Cache hit rate", "cache_hit_rate", "{:.1%}"),
)


@dataclass(frozen=True, slots=True)
class LiveReport:
    """A sweep (workload, preset, command, ...) plus what only live runs have."""

    sweep: SweepReport
    target: str
    time_scale: float
    live_runs: Sequence[LiveRun]


def results_document(report: LiveReport) -> dict[str, object]:
    sweep = report.sweep
    runs = []
    for live in report.live_runs:
        record = run_record(live.run)
        if live.level.mode == "concurrency":
            record["concurrency"] = int(live.level.value)
        runs.append(record)
    return {
        "workload": sweep.workload,
        "preset": sweep.preset,
        "replicas": sweep.replicas,
        "mode": "live",
        "target": report.target,
        "time_scale": report.time_scale,
        "runs": runs,
    }


def write_results_json(path: Path, report: LiveReport) -> None:
    doc = results_document(report)
    path.write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2) + b"\n")


def _by_mode(report: LiveReport, mode: str) -> SweepReport:
    """The sweep's runs of one mode, keyed by their level (QPS or concurrency)."""
    runs = [
        replace(live.run, qps=live.level.value)
        for live in report.live_runs
        if live.level.mode == mode
    ]
    return replace(report.sweep, runs=runs)


def _retitle(lines: list[str], mode: str) -> list[str]:
    if mode == "concurrency" and lines:
        lines[0] = lines[0].replace("| QPS |", "| concurrency |", 1)
    return lines


def _mode_sections(report: LiveReport, mode: str) -> list[str]:
    sweep = _by_mode(report, mode)
    if not sweep.runs:
        return []
    title = "Open loop (offered QPS)" if mode == "qps" else "Closed loop (concurrency)"
    lines = ["", f"## {title}"]
    for heading, name, style in _COMPARED:
        table = _retitle(comparison_table(sweep, name, style), mode)
        lines += ["", f"### {heading}", "", *table]
    for policy in sweep.policies():
        runs: list[PolicyRun] = [run for run in sweep.runs if run.policy == policy]
        lines += ["", f"### {policy}", "", *_retitle(policy_table(runs), mode)]
    return lines


def _notes(report: LiveReport) -> list[str]:
    lines = []
    for live in report.live_runs:
        where = f"{live.run.policy} at {live.level.label}"
        lines += [f"- {where}: {note}" for note in dict.fromkeys(live.notes)]
        if live.first_error is not None:
            lines.append(f"- {where}: first error: `{live.first_error[:200]}`")
    return ["", "## Notes", "", *lines] if lines else []


def report_markdown(report: LiveReport, plots: Sequence[str] = ()) -> str:
    sweep = report.sweep
    scale = report.time_scale
    clock = "wall-clock seconds" if scale == 1 else f"simulated seconds (time scale {scale:g})"
    lines = [
        f"# Live benchmark: {sweep.workload} against {report.target}",
        "",
        "```",
        sweep.command,
        "```",
        "",
        f"Seed {sweep.seed}. Times are {clock}; streamed requests, measured at the client.",
        "",
        "Workload parameters: " + ", ".join(f"`{k}={v}`" for k, v in sweep.parameters.items()),
        "",
        "Settings: " + ", ".join(f"`{k}={v}`" for k, v in sweep.settings.items()),
    ]
    lines += _mode_sections(report, "qps") + _mode_sections(report, "concurrency")
    if plots:
        lines += ["", "## Plots", "", *(f"![{Path(p).stem}]({p})" for p in plots)]
    return "\n".join(lines + _notes(report)) + "\n"


def write_report(out: Path, report: LiveReport, plots: bool) -> list[str]:
    """``results.json``, the plots of the open-loop runs (if asked) and ``report.md``."""
    out.mkdir(parents=True, exist_ok=True)
    write_results_json(out / "results.json", report)
    names: list[str] = []
    open_loop = _by_mode(report, "qps")
    if plots and open_loop.runs:
        from pilothouse.bench.plots import write_plots  # matplotlib is optional

        names = list(write_plots(open_loop, out))
    (out / "report.md").write_text(report_markdown(report, names), encoding="utf-8")
    return names
