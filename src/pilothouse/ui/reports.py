"""Benchmark reports for the console: ``results.json`` of ``pilothouse bench`` and its plots.

``gateway.ui.reports_dir`` is either one report directory or a directory of them (one
level deep). A plot is served only when it is a ``.png`` listed beside a report's
``results.json``: a request names a report and a file by name, never by path.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

COLUMNS = (
    ("policy", "policy"),
    ("qps", "QPS"),
    ("completed", "completed"),
    ("failed", "failed"),
    ("ttft_p50_s", "TTFT p50 (s)"),
    ("ttft_p90_s", "TTFT p90 (s)"),
    ("e2e_p90_s", "e2e p90 (s)"),
    ("output_tok_s", "output tok/s"),
    ("cache_hit_rate", "cache hit"),
)


@dataclass(frozen=True, slots=True)
class Report:
    name: str
    directory: Path
    workload: str
    preset: str
    replicas: object
    runs: tuple[tuple[object, ...], ...]
    plots: tuple[str, ...]
    error: str | None = None


def find_reports(root: Path) -> list[Report]:
    """Every report under ``root`` (itself, or its subdirectories), by name."""
    if (root / "results.json").is_file():
        return [load_report(root, root.name)]
    if not root.is_dir():
        return []
    return [
        load_report(child, child.name)
        for child in sorted(root.iterdir())
        if (child / "results.json").is_file()
    ]


def load_report(directory: Path, name: str) -> Report:
    plots = tuple(sorted(p.name for p in directory.glob("*.png") if p.is_file()))
    try:
        doc: Any = orjson.loads((directory / "results.json").read_bytes())
        if not isinstance(doc, dict):
            raise ValueError("not a JSON object")
        runs = tuple(
            tuple(run.get(key) for key, _ in COLUMNS)
            for run in doc.get("runs", [])
            if isinstance(run, dict)
        )
    except (OSError, ValueError) as exc:
        return Report(name, directory, "", "", None, (), plots, f"unreadable results.json: {exc}")
    return Report(
        name,
        directory,
        str(doc.get("workload", "")),
        str(doc.get("preset", "")),
        doc.get("replicas"),
        runs,
        plots,
    )


def plot_path(root: Path, report: str, plot: str) -> Path | None:
    """The file of a listed plot, or None."""
    for found in find_reports(root):
        if found.name == report and plot in found.plots:
            return found.directory / plot
    return None
