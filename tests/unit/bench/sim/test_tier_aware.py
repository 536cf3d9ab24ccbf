"""``bench sim`` gives the ``default`` scheduler the engines' KV tiers when they have a CPU
tier (``-offload`` presets, ``--cpu-kv-gib``), and changes nothing otherwise."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from pilothouse.bench.sim.cli import sim_command
from pilothouse.bench.sim.plan import SimPlan
from pilothouse.bench.sim.tier_aware import scheduler_for
from pilothouse.bench.workloads import ArrivalSpec
from pilothouse.clock import ManualClock
from pilothouse.scheduling import build_scheduler, resolve_config
from pilothouse.scheduling.plugins.scorers.approx_prefix import ApproxPrefixScorer
from pilothouse.sim.presets import get_preset

OFFLOAD = get_preset("qwen3-32b-tp2-h100-offload")
GPU_ONLY = get_preset("qwen3-32b-tp2-h100")


def _approx(policy: str, preset: str) -> ApproxPrefixScorer:
    scheduler = build_scheduler(scheduler_for(policy, get_preset(preset)), ManualClock())
    return next(p for p in scheduler.plugins.values() if isinstance(p, ApproxPrefixScorer))


def test_default_is_unchanged_without_a_cpu_tier() -> None:
    assert scheduler_for("default", GPU_ONLY) == resolve_config("default")
    assert not _approx("default", "qwen3-32b-tp2-h100").index.tiered


def test_default_gets_the_engine_tiers_with_a_cpu_tier() -> None:
    config = scheduler_for("default", OFFLOAD)
    (spec,) = [s for s in config.plugins if s.type == "approx-prefix"]
    assert spec.parameters == {
        **OFFLOAD.approx_prefix_tiers(),
        "max_prefix_blocks": OFFLOAD.max_model_len // 16,  # the whole prompt, in 16-token blocks
    }
    assert spec.parameters["offload_capacity_per_endpoint"] > 0
    assert _approx("default", "qwen3-32b-tp2-h100-offload").index.tiered


def test_baselines_run_as_they_ship_even_with_a_cpu_tier() -> None:
    assert scheduler_for("prefix-load", OFFLOAD) == resolve_config("prefix-load")
    assert not _approx("prefix-load", "qwen3-32b-tp2-h100-offload").index.tiered


def _plan(preset: str, cpu_kv_gib: float | None) -> SimPlan:
    return SimPlan(
        "b2b-saas", (), ArrivalSpec(), preset, 2, 10, 0, 0.05, (1.0,), cpu_kv_gib=cpu_kv_gib
    )


def test_cpu_kv_gib_sizes_the_tier_and_zero_turns_it_off() -> None:
    assert _plan("qwen3-32b-tp2-h100", None).engine().num_cpu_blocks == 0
    sized = _plan("qwen3-32b-tp2-h100", 50).engine()
    assert sized.num_cpu_blocks == GPU_ONLY.cpu_blocks_for(50) > 0
    assert _plan("qwen3-32b-tp2-h100-offload", 0).engine().num_cpu_blocks == 0


TINY = [
    "--workload", "b2b-saas", "--set", "groups=4", "--set", "users_per_group=2",
    "--set", "system_prompt_tokens=256", "--set", "question_tokens=32",
    "--set", "output_tokens=16", "--replicas", "2", "--requests", "30", "--qps", "5",
    "--policies", "default", "--no-plots",
]  # fmt: skip


def test_cli_flag_is_recorded_in_the_report(tmp_path: Path) -> None:
    result = CliRunner().invoke(sim_command, [*TINY, "--cpu-kv-gib", "20", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "--cpu-kv-gib 20" in (tmp_path / "report.md").read_text()
    assert json.loads((tmp_path / "results.json").read_text())["runs"][0]["completed"] == 30


def test_cli_flag_needs_a_preset_that_knows_its_kv_size(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        sim_command,
        [*TINY, "--preset", "smollm2-135m-cpu", "--cpu-kv-gib", "1", "--out", str(tmp_path)],
    )
    assert result.exit_code != 0
    assert "KV bytes per token" in result.output
    assert not (tmp_path / "results.json").exists()
