"""`bench overhead --tracing`: the traced target's plumbing, table and JSON (no timings)."""

from __future__ import annotations

from pathlib import Path

import yaml
from click.testing import CliRunner

from pilothouse.bench.cli import bench
from pilothouse.bench.overhead.results import LevelResult, OverheadReport, TargetStats
from pilothouse.bench.overhead.run import OverheadConfig, _schedule
from pilothouse.bench.overhead.services import fleet_yaml
from pilothouse.bench.overhead.tracing import (
    OTLP,
    TRACED,
    render_tracing_table,
    spans_received,
    tracing_block,
    tracing_lines,
)
from pilothouse.config.fleet import FleetSpec


def _stats(cpu: dict[str, float]) -> TargetStats:
    return TargetStats(
        requests=100, errors=0, window_s=1.0, rps=100.0, p50_ms=1.0, p90_ms=2.0, p99_ms=3.0,
        mean_ms=1.0, max_ms=4.0, cpu_ms_per_request=cpu, other_load_cores=0.0, first_error=None,
    )  # fmt: skip


def test_otel_traced_target_is_interleaved_with_the_others() -> None:
    config = OverheadConfig(concurrency=(1,), streams=(False,), rounds=2, tracing=True)
    assert config.targets == ("direct", "gateway", TRACED)
    orders = [order for _, order in _schedule(config)]
    assert orders == [("direct", "gateway", TRACED), (TRACED, "gateway", "direct")]
    assert OverheadConfig().targets == ("direct", "gateway")


def test_otel_traced_gateway_fleet_has_a_valid_tracing_section() -> None:
    doc = yaml.safe_load(
        fleet_yaml("http://127.0.0.1:9", "default", tracing=tracing_block("http://x/v1/traces"))
    )
    fleet = FleetSpec.model_validate(doc)
    assert fleet.tracing is not None
    assert (fleet.tracing.sample_ratio, fleet.tracing.protocol) == (1.0, "http/protobuf")
    plain = FleetSpec.model_validate(yaml.safe_load(fleet_yaml("http://127.0.0.1:9", "default")))
    assert plain.tracing is None


def test_otel_traced_cost_is_reported_per_level_and_in_json(tmp_path: Path) -> None:
    level = LevelResult(
        stream=False,
        concurrency=16,
        direct=_stats({}),
        gateway=_stats({"gateway": 0.25}),
        traced=_stats({TRACED: 0.40, OTLP: 0.01}),
    )
    (tmp_path / f"{OTLP}.stdout").write_text("otlp receiver ready: x\nspans received: 123\n")
    spans = spans_received(tmp_path)
    assert spans == 123
    report = OverheadReport(OverheadConfig(tracing=True), {}, [level], [], traced_spans=spans)
    doc = report.to_json()
    (row,) = doc["levels"]  # type: ignore[misc]
    assert row["traced_cpu_ms_per_request"] == 0.40
    assert abs(row["traced_added_cpu_ms_per_request"] - 0.15) < 1e-9
    assert doc["traced_spans"] == 123
    assert render_tracing_table(report) is not None
    assert tracing_lines(report) == [
        "the traced gateway exported 123 spans; 100 traced requests measured"
    ]
    assert spans_received(tmp_path / "missing") is None


def test_otel_bench_option_is_documented() -> None:
    result = CliRunner().invoke(bench, ["overhead", "--help"])
    assert result.exit_code == 0
    assert "--tracing" in result.output
