"""Per-class metrics of mixed-priority runs, and fcfs vs priority engines in one bench sim."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from pilothouse.bench.sim.classes import class_metrics, measured_leftover, mix_capacity
from pilothouse.bench.sim.cli import sim_command
from pilothouse.bench.workloads import ArrivalSpec, build_workload
from pilothouse.bench.workloads.base import PriorityClass
from pilothouse.sim.cluster_types import ClassTrace, RunMetrics, RunResult
from pilothouse.sim.presets import get_preset

PRESET = get_preset("llama-3.1-8b-h100")
CLASSES = (
    PriorityClass("interactive", 1, 0.75, 1200, 100, 0.8, 0.5),
    PriorityClass("batch", 0, 0.25, 4000, 1000, 0.25, None),
)


def _result(*traces: ClassTrace) -> RunResult:
    metrics = RunMetrics(0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0)
    return RunResult(metrics, classes=traces)


def test_the_mix_capacity_sums_utilisations_to_one() -> None:
    capacity = mix_capacity(PRESET, 4, CLASSES)
    alone = [
        m.capacity_qps for m in class_metrics(_result(*_traces()), CLASSES, PRESET, 4, 1.0, (0, 1))
    ]
    assert sum(
        c.share * capacity / cap for c, cap in zip(CLASSES, alone, strict=True)
    ) == pytest.approx(1.0)
    assert alone[1] < capacity < alone[0]


def _traces() -> tuple[ClassTrace, ClassTrace]:
    interactive = ClassTrace(1, (0.1, 0.2, 0.3, 0.9), (1.0, 5.0, 9.0, 30.0), (10, 10, 10, 10))
    batch = ClassTrace(0, (2.0, 4.0), (6.0, 8.0), (100, 100))
    return interactive, batch


def test_class_metrics_per_priority_over_the_steady_window() -> None:
    capacity = mix_capacity(PRESET, 4, CLASSES)
    interactive, batch = class_metrics(
        _result(*_traces()), CLASSES, PRESET, 4, 1.3 * capacity, (2.0, 10.0)
    )
    assert (interactive.name, interactive.completed) == ("interactive", 4)
    assert interactive.ttft_p90_s == pytest.approx(0.72)
    assert interactive.slo_met is False  # 0.72 s > 0.5 s
    assert interactive.steady_qps == pytest.approx(2 / 8)  # finished at 5 and 9 s
    assert interactive.leftover_qps is None
    assert batch.slo_met is None
    assert batch.steady_qps == pytest.approx(2 / 8)
    # interactive takes 1.3 x 0.75 x C / C_i of the fleet; batch gets the rest of C_b
    used = 1.3 * 0.75 * capacity / interactive.capacity_qps
    assert batch.leftover_qps == pytest.approx((1 - used) * batch.capacity_qps)
    assert batch.offered_qps == pytest.approx(1.3 * 0.25 * capacity)
    assert batch.kept == pytest.approx(batch.steady_qps / batch.leftover_qps)


def test_measured_leftover_takes_the_fleets_capacity_from_the_run_without_priorities() -> None:
    capacity = mix_capacity(PRESET, 4, CLASSES)
    fcfs = class_metrics(_result(*_traces()), CLASSES, PRESET, 4, capacity, (0.0, 8.0))
    prio = class_metrics(_result(*_traces()), CLASSES, PRESET, 4, capacity, (2.0, 10.0))
    interactive, batch = measured_leftover(fcfs, prio)
    assert interactive.measured_leftover_qps is None
    served = sum(m.steady_qps / m.capacity_qps for m in fcfs)
    expected = (served - interactive.steady_qps / interactive.capacity_qps) * batch.capacity_qps
    assert batch.measured_leftover_qps == pytest.approx(expected)
    assert batch.kept_measured == pytest.approx(batch.steady_qps / expected)


def test_mixed_priority_requests_carry_their_class_priority() -> None:
    workload = build_workload("mixed-priority", block_size=16, seed=1, overrides={})
    requests = list(workload.requests(5.0, 40, ArrivalSpec()))
    assert {(r.tenant or "").split("-")[0] + f":{r.priority}" for r in requests} == {
        "interactive:1",
        "batch:0",
    }


TINY = [
    "--workload", "mixed-priority", "--set", "system_tokens=64", "--set", "batch_prompt_tokens=400",
    "--set", "batch_output_tokens=200", "--set", "interactive_prompt_tokens=32",
    "--set", "interactive_output_tokens=16", "--replicas", "1", "--requests", "120",
    "--no-plots", "--policies", "round-robin", "--preset", "smollm2-135m-cpu",
]  # fmt: skip


def test_one_run_compares_engines_that_ignore_and_honour_priorities(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        sim_command,
        [*TINY, "--qps", "2x", "--scheduling-policy", "fcfs,priority", "--out", str(tmp_path)],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    doc = json.loads((tmp_path / "results.json").read_text())
    fcfs, prio = doc["runs"]
    assert (fcfs["policy"], prio["policy"]) == ("round-robin+fcfs", "round-robin+priority")
    assert [c["class"] for c in prio["classes"]] == ["interactive", "batch"]
    assert prio["classes"][0]["ttft_p90_s"] < fcfs["classes"][0]["ttft_p90_s"]
    assert "kept_measured" in prio["classes"][1]
    assert "kept_measured" not in fcfs["classes"][1]
    report = (tmp_path / "report.md").read_text()
    assert "## Priority classes" in report
    assert "--scheduling-policy fcfs,priority" in report


def test_an_unknown_scheduling_policy_is_refused(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        sim_command, [*TINY, "--scheduling-policy", "fcfs,lifo", "--out", str(tmp_path)]
    )
    assert result.exit_code != 0
    assert "unknown 'lifo'" in result.output
