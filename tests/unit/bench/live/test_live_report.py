"""results.json keeps bench sim's schema; report.md has both modes and the notes."""

from __future__ import annotations

from pathlib import Path

import orjson

from pilothouse.bench.live.report import LiveReport, report_markdown, write_report
from pilothouse.bench.live.run import Level, LiveRun
from pilothouse.bench.report import PolicyRun, SweepReport
from pilothouse.sim.cluster_types import RunMetrics, RunResult

SIM_KEYS = {
    "policy", "qps", "completed", "failed", "ttft_p50_s", "ttft_p90_s", "ttft_p99_s",
    "itl_p50_s", "e2e_p90_s", "output_tok_s", "cache_hit_rate", "max_queue_ratio",
    "itl_p90_s", "itl_p99_s", "e2e_p50_s", "e2e_p99_s",
}  # fmt: skip


def live_run(policy: str, level: Level, rate: float, notes: tuple[str, ...] = ()) -> LiveRun:
    metrics = RunMetrics(10, 0, 0.1, 0.2, 0.3, 0.01, 1.0, 500.0, 0.5, 1.2, 0.02, 0.03, 0.5, 1.5)
    return LiveRun(PolicyRun(policy, rate, RunResult(metrics)), level, notes)


def report() -> LiveReport:
    runs = [
        live_run("default", Level("qps", 5), 5.0),
        live_run("default", Level("concurrency", 8), 7.25, ("cache hit rate not measured",)),
        live_run("vllm-router:cache_aware", Level("qps", 5), 5.0),
    ]
    sweep = SweepReport(
        "b2b-saas", "llama-3.1-8b-h100", 4, 0, "pilothouse bench live ...", {"groups": 4},
        {"time_scale": 0.5}, [r.run for r in runs],
    )  # fmt: skip
    return LiveReport(sweep, "4 x engine sim (launched)", 0.5, runs)


def test_results_json_is_the_sim_schema_plus_live_fields(tmp_path: Path) -> None:
    write_report(tmp_path, report(), plots=False)
    doc = orjson.loads((tmp_path / "results.json").read_bytes())
    assert (doc["workload"], doc["preset"], doc["replicas"]) == ("b2b-saas", "llama-3.1-8b-h100", 4)
    assert (doc["mode"], doc["time_scale"]) == ("live", 0.5)
    assert [set(run) - SIM_KEYS for run in doc["runs"]] == [set(), {"concurrency"}, set()]
    closed = doc["runs"][1]
    assert (closed["concurrency"], closed["qps"]) == (8, 7.25)  # the rate it achieved


def test_report_has_a_section_per_mode_and_the_notes() -> None:
    text = report_markdown(report())
    assert "## Open loop (offered QPS)" in text
    assert "## Closed loop (concurrency)" in text
    assert "| concurrency | default |" in text
    assert "| QPS | default | vllm-router:cache_aware |" in text
    assert "simulated seconds (time scale 0.5)" in text
    assert "- default at concurrency 8: cache hit rate not measured" in text
