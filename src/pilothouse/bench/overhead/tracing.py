"""``bench overhead --tracing``: what OpenTelemetry traces cost per request.

Beside the plain gateway (no ``tracing:``: no tracer, no OpenTelemetry work per request),
the same run starts a **traced** gateway in front of the same mock, with ``tracing:`` on
(every request sampled, exported over OTLP/HTTP with the SDK's batch processor) to an OTLP
receiver the bench starts as a process of its own (``python -m
pilothouse.testing.otlp_receiver``, counting spans). The traced gateway's process tree
includes the exporter's thread, so its CPU per request is the whole cost of tracing on
the gateway's side; the receiver's CPU is metered apart (``otlp``), as a collector's would be.
Reported, not judged.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

from rich.table import Table

if TYPE_CHECKING:
    from pilothouse.bench.overhead.results import OverheadReport

TRACED = "traced"
OTLP = "otlp"
"""The meter of the OTLP receiver's CPU (what a collector would spend)."""
RECEIVER_READY = "otlp receiver ready: "
SPANS_LINE = "spans received: "


def receiver_argv() -> list[str]:
    return [sys.executable, "-m", "pilothouse.testing.otlp_receiver", "--protocol", "http/protobuf"]


def tracing_block(endpoint: str, decision_detail: bool = False) -> dict[str, object]:
    """The traced gateway's ``tracing:`` section: every request sampled and exported."""
    return {
        "endpoint": endpoint,
        "protocol": "http/protobuf",
        "service_name": "pilothouse-bench",
        "sample_ratio": 1.0,
        "decision_detail": decision_detail,
    }


def spans_received(log_dir: Path) -> int | None:
    """What the stopped receiver counted (its last stdout line), if it said."""
    out = log_dir / f"{OTLP}.stdout"
    lines = out.read_text(errors="replace").splitlines() if out.exists() else []
    for line in reversed(lines):
        if line.startswith(SPANS_LINE):
            return int(line.removeprefix(SPANS_LINE))
    return None


def tracing_lines(report: OverheadReport) -> list[str]:
    """With --tracing: how many spans reached the receiver (at least every traced request)."""
    if not report.config.tracing:
        return []
    served = sum(lv.traced.requests for lv in report.levels if lv.traced is not None)
    spans = "an unknown number of" if report.traced_spans is None else f"{report.traced_spans:,}"
    return [f"the traced gateway exported {spans} spans; {served:,} traced requests measured"]


def render_tracing_table(report: OverheadReport) -> Table | None:
    """With --tracing: the plain gateway beside the traced one, one row per level."""
    if not report.config.tracing:
        return None
    table = Table(title="tracing overhead: the same gateway without and with OTLP traces")
    headers = ["mode", "conc", "rps gateway", "rps traced", "p50/p99 ms traced"]
    headers += ["gateway CPU ms/req", "traced CPU ms/req", "added CPU ms/req", "receiver ms/req"]
    for header in headers:
        table.add_column(header, justify="right")
    for lv in report.levels:
        if lv.traced is None:
            continue
        table.add_row(
            "stream" if lv.stream else "plain",
            str(lv.concurrency),
            f"{lv.gateway.rps:,.0f}",
            f"{lv.traced.rps:,.0f}",
            f"{lv.traced.p50_ms:.2f}/{lv.traced.p99_ms:.2f}",
            f"{lv.gateway_cpu_ms:.3f}",
            f"{lv.traced_cpu_ms:.3f}",
            f"{lv.traced_cpu_ms - lv.gateway_cpu_ms:+.3f}",
            f"{lv.traced.cpu_ms_per_request.get(OTLP, float('nan')):.3f}",
        )
    return table
