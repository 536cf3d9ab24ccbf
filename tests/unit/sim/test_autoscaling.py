"""The autoscaler in the cluster simulator: replica timelines, cost and SLO in virtual time."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from pilothouse.bench.sim.cli import sim_command
from pilothouse.config.autoscaling import AutoscalingSpec
from pilothouse.scheduling import builtin_config
from pilothouse.sim.autoscaling import ScalingConfig
from pilothouse.sim.cluster import simulate
from pilothouse.sim.cluster_types import ClusterConfig, RunResult, ScalingRun, SimRequest
from pilothouse.sim.presets import get_preset
from tests.unit.sim.cluster_helpers import plain_request

PRESET = get_preset("llama-3.1-8b-h100")


def burst(start: float, count: int, gap: float, tag: str) -> list[SimRequest]:
    return [plain_request(f"{tag}-{i}", start + i * gap, output=32) for i in range(count)]


def run(
    requests: list[SimRequest], policy: AutoscalingSpec | None, replicas: int = 4, delay: float = 5
) -> RunResult:
    scaling = ScalingConfig(policy, startup_delay_s=delay, ttft_slo_s=1.0)
    config = ClusterConfig(PRESET, replicas, seed=1)
    return simulate(config, builtin_config("least-requests"), requests, scaling=scaling)


def scaling_of(result: RunResult) -> ScalingRun:
    assert result.scaling is not None
    return result.scaling


def policy(**fields: object) -> AutoscalingSpec:
    base: dict[str, object] = {"max_replicas": 4, "window_s": 2, "scale_down_stabilization_s": 10}
    return AutoscalingSpec.model_validate({**base, **fields})


def test_fixed_fleet_costs_replicas_times_duration() -> None:
    result = run(burst(0.0, 20, 0.5, "r"), None, replicas=3)
    scaling = scaling_of(result)
    assert scaling.timeline == ((0.0, 3, 3),)
    assert abs(scaling.replica_seconds - 3 * result.duration_s) < 1e-6
    assert scaling.slo_attainment == 1.0


def test_from_zero_every_held_request_is_served_and_waits_for_the_start() -> None:
    requests = burst(100.0, 20, 0.01, "cold")
    result = run(requests, policy(min_replicas=0, idle_timeout_s=30), delay=5)
    assert (result.metrics.completed, result.metrics.failed) == (20, 0)
    assert result.metrics.ttft_p50_s >= 4.8  # held while the replica started
    scaling = scaling_of(result)
    assert scaling.timeline[0] == (0.0, 0, 0)
    assert (100.0, 1, 0) in scaling.timeline  # started on the first request
    assert any(ready >= 1 for _, _, ready in scaling.timeline)
    assert scaling.slo_attainment == 0.0  # a 5 s start misses a 1 s SLO


def test_scale_up_under_a_load_step_and_back_down_after_it() -> None:
    requests = burst(0.0, 10, 1.0, "calm") + burst(10.0, 600, 0.02, "step")
    requests += burst(40.0, 40, 1.0, "calm2")
    result = run(requests, policy(target=4, min_replicas=1), delay=2)
    assert result.metrics.failed == 0
    scaling = scaling_of(result)
    peak = max(n for _, n, _ in scaling.timeline)
    assert peak >= 3
    assert scaling.timeline[-1][1] == 1  # back to the minimum once the step is over
    fixed = scaling_of(run(requests, None))
    assert scaling.replica_seconds < fixed.replica_seconds


def test_same_inputs_same_timeline() -> None:
    requests = burst(0.0, 200, 0.05, "d")
    first = scaling_of(run(requests, policy(target=2)))
    assert first == scaling_of(run(requests, policy(target=2)))


def test_bench_sim_compares_autoscaling_policies(tmp_path: Path) -> None:
    args = [
        "--workload", "no-reuse", "--set", "prompt_tokens=64", "--set", "output_tokens=16",
        "--arrival", "diurnal", "--period", "20", "--qps", "20", "--requests", "400",
        "--replicas", "3", "--autoscale", "fixed,queue-depth", "--ttft-slo", "0.5",
        "--startup-delay", "2", "--out", str(tmp_path), "--no-plots",
    ]  # fmt: skip
    result = CliRunner().invoke(sim_command, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    runs = json.loads((tmp_path / "results.json").read_text())["runs"]
    assert [r["policy"] for r in runs] == ["fixed", "queue-depth"]
    for entry in runs:
        assert entry["replica_seconds"] > 0
        assert 0 <= entry["slo_attainment"] <= 1
        assert entry["timeline"][0][0] == 0
    assert runs[1]["replica_seconds"] < runs[0]["replica_seconds"]
    report = (tmp_path / "report.md").read_text()
    assert "## Autoscaling: cost against service" in report
    assert "--autoscale fixed,queue-depth" in report


def test_bench_sim_refuses_several_schedulers_with_autoscale(tmp_path: Path) -> None:
    args = ["--autoscale", "fixed", "--policies", "random,round-robin", "--out", str(tmp_path)]
    result = CliRunner().invoke(sim_command, args)
    assert result.exit_code != 0
    assert "single --policies" in result.output
