"""PNG plots of a simulated sweep (matplotlib, Agg backend: no display needed).

- ``ttft_p90_vs_qps.png``: TTFT p90 against offered QPS, one line per policy (log scale);
- ``throughput_vs_qps.png``: output tokens per second against offered QPS;
- ``queues.png``: at the highest QPS, every replica's engine wait queue over virtual time,
  one subplot per policy.

matplotlib is an optional dependency (``pilothouse[bench]``); importing this module
without it raises ImportError, which the command turns into a clear message.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt

from pilothouse.bench.report import PolicyRun, SweepReport

_DPI = 90
_MARKERS = "osD^vP*X"


def _title(report: SweepReport) -> str:
    return f"{report.workload} · {report.replicas} x {report.preset}"


def _by_policy(report: SweepReport) -> list[tuple[str, list[PolicyRun]]]:
    return [
        (policy, sorted((r for r in report.runs if r.policy == policy), key=lambda r: r.qps))
        for policy in report.policies()
    ]


def _line_plot(report: SweepReport, path: Path, metric: str, ylabel: str, *, log: bool) -> None:
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    for i, (policy, runs) in enumerate(_by_policy(report)):
        values = [getattr(r.result.metrics, metric) for r in runs]
        ax.plot([r.qps for r in runs], values, marker=_MARKERS[i % len(_MARKERS)], label=policy)
    ax.set_xlabel("offered load (QPS)")
    ax.set_ylabel(ylabel)
    if log:
        ax.set_yscale("log")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize="small")
    ax.set_title(_title(report), fontsize="medium")
    fig.tight_layout()
    fig.savefig(path, dpi=_DPI)
    plt.close(fig)


def _queue_axes(count: int) -> tuple[Any, list[Any]]:
    columns = min(count, 2)
    rows = -(-count // columns)
    fig, axes = plt.subplots(
        rows,
        columns,
        figsize=(6.4 * columns / 1.4, 2.6 * rows),
        sharex=True,
        sharey=True,
        squeeze=False,
    )
    flat = [ax for row in axes for ax in row]
    for ax in flat[count:]:
        ax.set_visible(False)
    return fig, flat[:count]


def queue_plot(report: SweepReport, path: Path) -> None:
    top = max(report.levels())
    runs = [r for r in report.runs if r.qps == top]
    fig, axes = _queue_axes(len(runs))
    for ax, run in zip(axes, runs, strict=True):
        trace = run.result.queue_trace
        for series in trace.queues:
            ax.plot(trace.times, series, linewidth=0.7, alpha=0.8)
        ratio = run.result.metrics.max_queue_ratio
        ax.set_title(f"{run.policy} (max queue ratio {ratio:.2f})", fontsize="small")
        ax.grid(True, alpha=0.3)
    for ax in axes:
        ax.set_xlabel("virtual time (s)")
        ax.set_ylabel("waiting requests")
    fig.suptitle(f"{_title(report)} · per-replica queues at {top:g} QPS", fontsize="medium")
    fig.tight_layout()
    fig.savefig(path, dpi=_DPI)
    plt.close(fig)


def write_plots(report: SweepReport, out: Path) -> Sequence[str]:
    """Write the three plots into ``out``; returns their file names."""
    _line_plot(report, out / "ttft_p90_vs_qps.png", "ttft_p90_s", "TTFT p90 (s)", log=True)
    _line_plot(report, out / "throughput_vs_qps.png", "output_tok_s", "output tok/s", log=False)
    queue_plot(report, out / "queues.png")
    return ("ttft_p90_vs_qps.png", "throughput_vs_qps.png", "queues.png")
