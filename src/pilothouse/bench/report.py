"""Writing a simulated sweep: ``results.json`` (fixed schema) and ``report.md``.

``results.json``::

    {"workload": str, "preset": str, "replicas": int,
     "runs": [{"policy": str, "qps": float, "completed": int, "failed": int,
               "ttft_p50_s": float, "ttft_p90_s": float, "ttft_p99_s": float,
               "itl_p50_s": float, "e2e_p90_s": float, "output_tok_s": float,
               "cache_hit_rate": float, "max_queue_ratio": float, "itl_p90_s": float,
               "itl_p99_s": float, "e2e_p50_s": float, "e2e_p99_s": float,
               "max_queue_ratio_steady": float}, ...]}

``max_queue_ratio_steady`` is the same ratio over the steady state only (a warm-up at the
start left out too; :mod:`pilothouse.bench.sim.steady`); ``ttft_mape`` and
``ttft_mape_samples`` (``itl_mape``, ``itl_mape_samples``) are shadow latency predictors' errors
(:mod:`pilothouse.bench.sim.prediction`). With ``--slo``, a top-level ``goodput`` list comes
before ``runs``: ``{"policy", "slo", "qps", "probes"}`` per policy and SLO (``slo`` as
given; ``bound: "lower"`` when the SLO held at the highest level, ``below`` the lowest level
when it never held and ``qps`` is 0; ``probes``: ``[qps, held]`` in the order evaluated;
:mod:`pilothouse.bench.sim.goodput`).

A run of a workload with priority classes (``mixed-priority``) adds ``classes``: per class,
most important first, ``{"class", "priority", "completed", "ttft_p50_s", "ttft_p90_s",
"ttft_p99_s", "offered_qps", "steady_qps", "capacity_qps", "ttft_slo_s", "slo_met"}``, and
for the least important class ``leftover_qps`` and ``kept``, plus ``measured_leftover_qps``
and ``kept_measured`` in a ``+priority`` run compared with its ``+fcfs`` run
(:mod:`pilothouse.bench.sim.classes`).

Runs of ``--autoscale`` add ``replica_seconds``, ``mean_replicas``, ``peak_replicas``,
``ttft_slo_s``, ``slo_attainment`` (``null`` without ``--ttft-slo``) and ``timeline``
(``[time, replicas, ready]`` at every change) to each entry.

Runs are ordered by policy (as given), then QPS. Floats are rounded to 6 decimals. Nothing
in either file depends on the wall clock, so the same command and seed write the same bytes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path

import orjson

from pilothouse.bench.sim.classes import ClassMetrics, classes_table
from pilothouse.bench.sim.goodput import GoodputEntry, goodput_table
from pilothouse.bench.sim.prediction import prediction_record, prediction_section
from pilothouse.sim.cluster_types import RunMetrics, RunResult, ScalingRun

_DECIMALS = 6


@dataclass(frozen=True, slots=True)
class PolicyRun:
    """One point of a sweep: a policy at a QPS level (``max_queue_ratio_steady``: set by
    ``bench sim``, which knows the arrival window)."""

    policy: str
    qps: float
    result: RunResult
    max_queue_ratio_steady: float | None = None
    classes: tuple[ClassMetrics, ...] = ()


@dataclass(frozen=True, slots=True)
class SweepReport:
    """Everything a report needs about one sweep."""

    workload: str
    preset: str
    replicas: int
    seed: int
    command: str
    parameters: Mapping[str, object]
    settings: Mapping[str, object]
    runs: Sequence[PolicyRun]
    goodput: Sequence[GoodputEntry] = ()

    def policies(self) -> list[str]:
        return list(dict.fromkeys(run.policy for run in self.runs))

    def levels(self) -> list[float]:
        return sorted({run.qps for run in self.runs})


def run_record(run: PolicyRun) -> dict[str, object]:
    """One ``runs`` entry of results.json."""
    record: dict[str, object] = {"policy": run.policy, "qps": round(run.qps, _DECIMALS)}
    metrics = run.result.metrics
    for field in fields(RunMetrics):
        value = getattr(metrics, field.name)
        record[field.name] = round(value, _DECIMALS) if isinstance(value, float) else value
    if run.max_queue_ratio_steady is not None:
        record["max_queue_ratio_steady"] = round(run.max_queue_ratio_steady, _DECIMALS)
    record.update(prediction_record(run))
    scaling = run.result.scaling
    if scaling is not None:
        record.update(scaling_record(scaling))
    if run.classes:
        record["classes"] = [metrics.record(_DECIMALS) for metrics in run.classes]
    return record


def scaling_record(scaling: ScalingRun) -> dict[str, object]:
    """The autoscaling fields of a ``runs`` entry."""
    attainment = scaling.slo_attainment
    return {
        "replica_seconds": round(scaling.replica_seconds, _DECIMALS),
        "mean_replicas": round(scaling.mean_replicas, _DECIMALS),
        "peak_replicas": scaling.peak_replicas,
        "ttft_slo_s": scaling.ttft_slo_s,
        "slo_attainment": None if attainment is None else round(attainment, _DECIMALS),
        "timeline": [[round(t, _DECIMALS), n, ready] for t, n, ready in scaling.timeline],
    }


def autoscaling_table(runs: Sequence[PolicyRun]) -> list[str]:
    """Cost against service: one row per autoscaled run."""
    lines = [
        "| policy | QPS | replica-seconds | mean replicas | peak | TTFT SLO met | "
        "TTFT p90 (s) | failed |",
        "| --- |" + " ---: |" * 7,
    ]
    for run in runs:
        scaling, metrics = run.result.scaling, run.result.metrics
        if scaling is None:
            continue
        met = "-" if scaling.slo_attainment is None else f"{scaling.slo_attainment:.1%}"
        lines.append(
            f"| {run.policy} | {run.qps:g} | {scaling.replica_seconds:,.0f} | "
            f"{scaling.mean_replicas:.2f} | {scaling.peak_replicas} | {met} | "
            f"{metrics.ttft_p90_s:.3f} | {metrics.failed} |"
        )
    return lines


def results_document(report: SweepReport) -> dict[str, object]:
    document: dict[str, object] = {
        "workload": report.workload,
        "preset": report.preset,
        "replicas": report.replicas,
    }
    if report.goodput:
        document["goodput"] = [entry.record(_DECIMALS) for entry in report.goodput]
    document["runs"] = [run_record(run) for run in report.runs]
    return document


def write_results_json(path: Path, report: SweepReport) -> None:
    path.write_bytes(orjson.dumps(results_document(report), option=orjson.OPT_INDENT_2) + b"\n")


_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("completed", "done", "{:d}"),
    ("failed", "failed", "{:d}"),
    ("ttft_p50_s", "TTFT p50 (s)", "{:.3f}"),
    ("ttft_p90_s", "TTFT p90 (s)", "{:.3f}"),
    ("ttft_p99_s", "TTFT p99 (s)", "{:.3f}"),
    ("itl_p50_s", "ITL p50 (ms)", "ms"),
    ("e2e_p90_s", "e2e p90 (s)", "{:.2f}"),
    ("output_tok_s", "output tok/s", "{:,.0f}"),
    ("cache_hit_rate", "cache hits", "{:.1%}"),
    ("max_queue_ratio", "max queue ratio", "{:.2f}"),
)


def _cell(metrics: RunMetrics, name: str, style: str) -> str:
    value = getattr(metrics, name)
    if style == "ms":
        return f"{value * 1e3:.1f}"
    return style.format(value)


def policy_table(runs: Sequence[PolicyRun]) -> list[str]:
    """A markdown table of one policy's runs, one row per QPS level."""
    header = "| QPS | " + " | ".join(title for _, title, _ in _COLUMNS) + " |"
    lines = [header, "|" + " ---: |" * (len(_COLUMNS) + 1)]
    for run in sorted(runs, key=lambda r: r.qps):
        cells = [_cell(run.result.metrics, name, style) for name, _, style in _COLUMNS]
        lines.append(f"| {run.qps:g} | " + " | ".join(cells) + " |")
    return lines


def comparison_table(report: SweepReport, name: str, style: str) -> list[str]:
    """One metric, QPS levels down, policies across."""
    policies = report.policies()
    by_key = {(run.policy, run.qps): run for run in report.runs}
    lines = ["| QPS | " + " | ".join(policies) + " |", "|" + " ---: |" * (len(policies) + 1)]
    for qps in report.levels():
        cells = []
        for policy in policies:
            run = by_key.get((policy, qps))
            cells.append("-" if run is None else _cell(run.result.metrics, name, style))
        lines.append(f"| {qps:g} | " + " | ".join(cells) + " |")
    return lines


def report_markdown(report: SweepReport, plots: Sequence[str] = ()) -> str:
    lines = [
        f"# Simulated sweep: {report.workload} on {report.replicas} x {report.preset}",
        "",
        "```",
        report.command,
        "```",
        "",
        f"Seed {report.seed}. Virtual time; every number below is reproducible from the command.",
        "",
        "Workload parameters: "
        + ", ".join(f"`{k}={v}`" for k, v in report.parameters.items())
        + ".",
        "Simulation settings: " + ", ".join(f"`{k}={v}`" for k, v in report.settings.items()) + ".",
        "",
        *_goodput_section(report),
        *_classes_section(report),
        *_autoscaling_section(report),
        "## TTFT p90 (s)",
        "",
        *comparison_table(report, "ttft_p90_s", "{:.3f}"),
        "",
        "## Output throughput (tok/s)",
        "",
        *comparison_table(report, "output_tok_s", "{:,.0f}"),
        "",
        "## Cache hit rate",
        "",
        *comparison_table(report, "cache_hit_rate", "{:.1%}"),
        *_steady_section(report),
        *prediction_section(report.runs),
    ]
    for policy in report.policies():
        runs = [run for run in report.runs if run.policy == policy]
        lines += ["", f"## {policy}", "", *policy_table(runs)]
    if plots:
        lines += ["", "## Plots", ""]
        lines += [f"![{Path(plot).stem}]({plot})" for plot in plots]
    return "\n".join(lines) + "\n"


def _goodput_section(report: SweepReport) -> list[str]:
    if not report.goodput:
        return []
    lines = [
        "## Goodput",
        "",
        "The highest QPS at which the SLO held (every target met, no request failed), "
        "bisected between the sweep's levels; `≥`: it held at the highest level.",
        "",
        *goodput_table(report.goodput),
    ]
    never = [e for e in report.goodput if e.search.below is not None]
    for entry in never:
        lines.append("")
        lines.append(
            f"{entry.policy} missed `{entry.slo}` already at the lowest level, "
            f"{entry.search.below:g} QPS: its goodput is below the sweep."
        )
    return [*lines, ""]


def _classes_section(report: SweepReport) -> list[str]:
    rows = [(run.policy, run.qps, run.classes) for run in report.runs if run.classes]
    if not rows:
        return []
    return [
        "## Priority classes",
        "",
        "Per class: TTFT against its target (p90), completions per second over the steady "
        "window, the fleet's capacity estimate for the class alone, and for the least "
        "important class the capacity the others leave it and the share of it served "
        "(`kept`; docs/bench-sim.md#priority-classes).",
        "",
        *classes_table(rows),
        "",
    ]


def _steady_section(report: SweepReport) -> list[str]:
    if not any(run.max_queue_ratio_steady is not None for run in report.runs):
        return []
    policies = report.policies()
    by_key = {(run.policy, run.qps): run for run in report.runs}
    lines = [
        "",
        "## Max queue ratio: whole run / steady state",
        "",
        "| QPS | " + " | ".join(policies) + " |",
        "|" + " ---: |" * (len(policies) + 1),
    ]
    for qps in report.levels():
        cells = []
        for policy in policies:
            run = by_key.get((policy, qps))
            steady = None if run is None else run.max_queue_ratio_steady
            if run is None or steady is None:
                cells.append("-")
            else:
                cells.append(f"{run.result.metrics.max_queue_ratio:.2f} / {steady:.2f}")
        lines.append(f"| {qps:g} | " + " | ".join(cells) + " |")
    return lines


def _autoscaling_section(report: SweepReport) -> list[str]:
    if not any(run.result.scaling is not None for run in report.runs):
        return []
    slo = report.settings.get("ttft_slo_s")
    target = f"TTFT at most {slo} s" if slo is not None else "no --ttft-slo given"
    return [
        "## Autoscaling: cost against service",
        "",
        f"Replica-seconds spent (starting, ready and draining replicas) and the share of "
        f"requests served within the SLO ({target}; a failed request misses it).",
        "",
        *autoscaling_table(report.runs),
        "",
    ]


def write_report_md(path: Path, report: SweepReport, plots: Sequence[str] = ()) -> None:
    path.write_text(report_markdown(report, plots), encoding="utf-8")
