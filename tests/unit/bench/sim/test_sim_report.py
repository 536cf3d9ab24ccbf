"""``pilothouse bench sim`` end to end: results.json schema, determinism, report and plots."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from pilothouse.bench.sim.cli import sim_command

TINY = [
    "--workload", "b2b-saas",
    "--set", "groups=6", "--set", "users_per_group=2", "--set", "system_prompt_tokens=256",
    "--set", "question_tokens=32", "--set", "output_tokens=16",
    "--preset", "llama-3.1-8b-h100", "--replicas", "3",
    "--requests", "60", "--qps", "5,40", "--seed", "3",
]  # fmt: skip

RUN_KEYS = {
    "policy": str,
    "qps": float,
    "completed": int,
    "failed": int,
    "ttft_p50_s": float,
    "ttft_p90_s": float,
    "ttft_p99_s": float,
    "itl_p50_s": float,
    "e2e_p90_s": float,
    "output_tok_s": float,
    "cache_hit_rate": float,
    "max_queue_ratio": float,
    "itl_p90_s": float,
    "itl_p99_s": float,
    "e2e_p50_s": float,
    "e2e_p99_s": float,
    "max_queue_ratio_steady": float,
    "ttft_mape": (float, type(None)),  # null: no replica got past the predictor's warm-up
    "ttft_mape_samples": int,
    "itl_mape": (float, type(None)),
    "itl_mape_samples": int,
}


def _run(*args: str) -> Result:
    return CliRunner().invoke(sim_command, list(args), catch_exceptions=False)


def _sim(out: Path, policies: str = "round-robin,cache-aware-sglang", *extra: str) -> dict:
    result = _run(*TINY, "--policies", policies, "--out", str(out), "--no-plots", *extra)
    assert result.exit_code == 0, result.output
    return json.loads((out / "results.json").read_text())


def test_results_json_has_exactly_the_schema(tmp_path: Path) -> None:
    document = _sim(tmp_path)
    assert list(document) == ["workload", "preset", "replicas", "runs"]
    assert (document["workload"], document["preset"], document["replicas"]) == (
        "b2b-saas",
        "llama-3.1-8b-h100",
        3,
    )
    assert [(r["policy"], r["qps"]) for r in document["runs"]] == [
        ("round-robin", 5.0),
        ("round-robin", 40.0),
        ("cache-aware-sglang", 5.0),
        ("cache-aware-sglang", 40.0),
    ]
    for run in document["runs"]:
        assert list(run) == list(RUN_KEYS)
        for key, kind in RUN_KEYS.items():
            assert isinstance(run[key], kind), key
        assert run["completed"] + run["failed"] == 60


def test_same_seed_writes_identical_files(tmp_path: Path) -> None:
    _sim(tmp_path / "a")
    _sim(tmp_path / "b")
    for name in ("results.json", "report.md"):
        first = (tmp_path / "a" / name).read_text().replace(str(tmp_path / "a"), "OUT")
        second = (tmp_path / "b" / name).read_text().replace(str(tmp_path / "b"), "OUT")
        assert first == second, name


def test_report_names_the_command_seed_and_every_policy(tmp_path: Path) -> None:
    _sim(tmp_path)
    report = (tmp_path / "report.md").read_text()
    command = next(line for line in report.splitlines() if line.startswith("pilothouse bench sim"))
    assert "--qps 5,40" in command
    assert "--seed 3" in command
    assert "--set groups=6" in command
    assert "Seed 3." in report
    assert "## round-robin" in report
    assert "## cache-aware-sglang" in report
    assert "| QPS | round-robin | cache-aware-sglang |" in report


def test_policies_accept_yaml_paths(tmp_path: Path) -> None:
    path = tmp_path / "mine.yaml"
    path.write_text(
        "plugins: [{type: ready}, {type: least-requests}, {type: max-score}]\n"
        "profiles: [{name: p, plugins: [{ref: ready}, {ref: least-requests}, {ref: max-score}]}]\n",
        encoding="utf-8",
    )
    document = _sim(tmp_path / "out", f"random,{path}")
    assert {r["policy"] for r in document["runs"]} == {"random", "mine"}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param(["--policies", "nope"], "neither a builtin", id="unknown-policy"),
        pytest.param(["--qps", "3,x"], "comma-separated", id="bad-qps"),
        pytest.param(["--set", "groups"], "NAME=VALUE", id="bad-set"),
        pytest.param(["--workload", "missing.jsonl"], "neither a built-in workload", id="workload"),
    ],
)
def test_bad_options_fail_before_simulating(tmp_path: Path, args: list[str], message: str) -> None:
    result = _run(*args, "--out", str(tmp_path), "--no-plots")
    assert result.exit_code != 0
    assert message in result.output
    assert not (tmp_path / "results.json").exists()


def test_plots_are_written(tmp_path: Path) -> None:
    result = _run(*TINY, "--policies", "random,prefix-load", "--out", str(tmp_path))
    assert result.exit_code == 0, result.output
    for name in ("ttft_p90_vs_qps.png", "throughput_vs_qps.png", "queues.png"):
        data = (tmp_path / name).read_bytes()
        assert data.startswith(b"\x89PNG"), name
        assert f"({name})" in (tmp_path / "report.md").read_text()


def test_trace_replays_at_its_own_rate_by_default(tmp_path: Path) -> None:
    trace = tmp_path / "t.jsonl"
    lines = [
        json.dumps({"arrival_s": i * 0.5, "prompt_tokens": 200, "prefix_group": f"g{i % 2}",
                    "prefix_tokens": 160, "output_tokens": 8})
        for i in range(20)
    ]  # fmt: skip
    trace.write_text("\n".join(lines), encoding="utf-8")
    out = tmp_path / "out"
    result = _run("--workload", str(trace), "--policies", "round-robin", "--replicas", "2",
                  "--out", str(out), "--no-plots")  # fmt: skip
    assert result.exit_code == 0, result.output
    document = json.loads((out / "results.json").read_text())
    assert document["workload"] == "t.jsonl"
    assert [(r["qps"], r["completed"]) for r in document["runs"]] == [(2.0, 20)]
