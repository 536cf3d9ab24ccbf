"""``bench overhead --baseline-rev REV``: this gateway against its own code at another commit.

A change that must cost nothing (tracing off, a refactor of the request path) is judged in
one run: the bench extracts ``src/pilothouse`` at ``REV`` from the git checkout it runs from
(``git archive``), starts that code's gateway as a process of its own (``PYTHONPATH``) beside
this one, in front of the same mock, and interleaves their loads like every other target.
The table puts the two gateways' CPU per request side by side; the difference is this
code's cost over ``REV``'s. Reported, not judged: a difference within the run's spread is
noise.
"""

from __future__ import annotations

import io
import subprocess
import tarfile
from pathlib import Path
from typing import TYPE_CHECKING

from rich.table import Table

from pilothouse.bench.processes import BenchError

if TYPE_CHECKING:
    from pilothouse.bench.overhead.results import OverheadReport

BASELINE = "baseline"


def checkout_root() -> Path:
    """The git checkout this pilothouse runs from; :class:`BenchError` for an installed one."""
    root = Path(__file__).resolve().parents[4]
    if not (root / ".git").exists():
        raise BenchError(f"--baseline-rev needs pilothouse run from a git checkout, not {root}")
    return root


def extract_source(rev: str, into: Path) -> Path:
    """``src/pilothouse`` at ``rev`` under ``into``; the directory to put on ``PYTHONPATH``."""
    root = checkout_root()
    done = subprocess.run(
        ["git", "-C", str(root), "archive", "--format=tar", rev, "src/pilothouse"],
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        message = done.stderr.decode(errors="replace").strip()
        raise BenchError(f"cannot read {rev!r} from {root}: {message}")
    with tarfile.open(fileobj=io.BytesIO(done.stdout)) as archive:
        archive.extractall(into, filter="data")
    return into / "src"


def render_baseline_table(report: OverheadReport) -> Table | None:
    """With --baseline-rev: both gateways' CPU per request, one row per level."""
    rev = report.config.baseline_rev
    if rev is None:
        return None
    table = Table(title=f"this gateway against its code at {rev} (same run, same mock)")
    headers = ["mode", "conc", f"{rev} CPU ms/req", "this CPU ms/req", "difference ms/req"]
    headers += [f"{rev} p50/p99 ms", "this p50/p99 ms"]
    for header in headers:
        table.add_column(header, justify="right")
    for lv in report.levels:
        if lv.baseline is None:
            continue
        table.add_row(
            "stream" if lv.stream else "plain",
            str(lv.concurrency),
            f"{lv.baseline_cpu_ms:.3f}",
            f"{lv.gateway_cpu_ms:.3f}",
            f"{lv.gateway_cpu_ms - lv.baseline_cpu_ms:+.3f}",
            f"{lv.baseline.p50_ms:.2f}/{lv.baseline.p99_ms:.2f}",
            f"{lv.gateway.p50_ms:.2f}/{lv.gateway.p99_ms:.2f}",
        )
    return table
