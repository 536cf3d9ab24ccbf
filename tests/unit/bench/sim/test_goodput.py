"""Goodput: the bisection on a synthetic monotone predicate, the SLO parser, the steady
queue ratio, and ``bench sim --slo`` end to end on a tiny cluster."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner

from pilothouse.bench.sim.cli import sim_command
from pilothouse.bench.sim.goodput import GoodputEntry, GoodputSearch, goodput_table, search_goodput
from pilothouse.bench.sim.slo import measured_metrics, parse_slo
from pilothouse.bench.sim.steady import ArrivalWindow, steady_queue_ratio
from pilothouse.errors import ConfigError
from pilothouse.sim.cluster_types import QueueTrace, RunMetrics, SimRequest

LEVELS = (1.0, 2.0, 4.0, 8.0, 16.0)


def _threshold(capacity: float, seen: list[float]) -> Callable[[float], bool]:
    def holds(qps: float) -> bool:
        seen.append(qps)
        return qps <= capacity

    return holds


@pytest.mark.parametrize("capacity", [1.0, 2.5, 5.0, 7.9, 12.0])
def test_bisection_closes_in_on_a_monotone_threshold(capacity: float) -> None:
    seen: list[float] = []
    found = search_goodput(LEVELS, _threshold(capacity, seen), steps=6)
    assert found.bound is None
    assert found.below is None
    assert found.qps <= capacity  # what it reports held
    upper = min(p.qps for p in found.probes if not p.holds)
    assert upper > capacity  # and the first miss above it is a true miss
    assert upper / found.qps <= 2.0 ** (1 / 2**6) + 1e-9  # six halvings of a factor 2
    levels_seen = [q for q in seen if q in LEVELS]
    assert levels_seen == sorted(levels_seen)  # the levels first, ascending
    assert seen[: len(levels_seen)] == levels_seen
    assert len(seen) == len(levels_seen) + 6


def test_a_slo_that_never_holds_gives_zero_and_the_level_it_missed() -> None:
    found = search_goodput(LEVELS, lambda qps: False, steps=4)
    assert (found.qps, found.below, found.bound) == (0.0, 1.0, None)
    assert len(found.probes) == 1  # no bisection below the sweep


def test_a_slo_that_always_holds_is_a_lower_bound_at_the_highest_level() -> None:
    found = search_goodput(LEVELS, lambda qps: True, steps=4)
    assert (found.qps, found.bound) == (16.0, "lower")
    assert [p.qps for p in found.probes] == list(LEVELS)


def test_zero_steps_stops_at_the_last_level_that_held() -> None:
    found = search_goodput(LEVELS, lambda qps: qps < 5, steps=0)
    assert found.qps == 4.0
    assert [p.qps for p in found.probes] == [1.0, 2.0, 4.0, 8.0]


def test_a_miss_stops_the_level_scan_even_if_a_higher_level_holds_again() -> None:
    found = search_goodput(LEVELS, lambda qps: qps != 2.0, steps=0)
    assert found.qps == 1.0


def test_goodput_table_ratios_against_round_robin_and_the_best_baseline() -> None:
    entries = [
        GoodputEntry("round-robin", "ttft_p90=1s", GoodputSearch(2.0)),
        GoodputEntry("cache-aware-sglang", "ttft_p90=1s", GoodputSearch(5.0)),
        GoodputEntry("default", "ttft_p90=1s", GoodputSearch(6.0, bound="lower")),
    ]
    rows = goodput_table(entries)[2:]
    assert rows[2] == ("| default | `ttft_p90=1s` | ≥ 6 | 3.00x | 1.20x | cache-aware-sglang |")
    assert rows[1].startswith("| cache-aware-sglang | `ttft_p90=1s` | 5 | 2.50x | 2.50x |")


def test_slo_parses_units_and_metrics() -> None:
    slo = parse_slo("ttft_p90=1s, itl_p50=50ms,e2e_p90=2.5s")
    assert [(t.metric, t.limit_s) for t in slo.targets] == [
        ("ttft_p90", 1.0),
        ("itl_p50", pytest.approx(0.05)),
        ("e2e_p90", 2.5),
    ]
    assert slo.text == "ttft_p90=1s, itl_p50=50ms,e2e_p90=2.5s"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("ttft_p90=1h", "unit 'h'; use s or ms"),
        ("ttft_p90=1", "no unit"),
        ("ttft_p90=fast", "needs a number with a unit"),
        ("tpot_p90=1s", "unknown metric 'tpot_p90'"),
        ("ttft_p95=1s", "unknown metric 'ttft_p95'"),
        ("ttft_p90", "expected METRIC=LIMIT"),
        ("ttft_p90=1s,ttft_p90=2s", "given twice"),
        ("ttft_p90=0s", "must be > 0"),
        (" , ", "at least one METRIC=LIMIT"),
    ],
)
def test_slo_errors_say_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        parse_slo(text)


def test_every_latency_percentile_is_measured() -> None:
    assert len(measured_metrics()) == 9
    slo = parse_slo("itl_p90=50ms,itl_p99=200ms,e2e_p50=2s,e2e_p99=9s")
    metrics = _metrics(0.5)
    assert slo.holds(metrics)
    assert parse_slo("itl_p99=30ms").misses(metrics) == ["itl_p99 0.04 s > 0.03 s"]


def _metrics(ttft_p90: float, failed: int = 0) -> RunMetrics:
    return RunMetrics(
        100, failed, 0.1, ttft_p90, 0.5, 0.02, 3.0, 1e3, 0.5, 1.0, 0.03, 0.04, 2.0, 4.0
    )


def test_slo_holds_only_within_every_target_and_without_failures() -> None:
    slo = parse_slo("ttft_p90=1s,itl_p50=30ms")
    assert slo.holds(_metrics(1.0))
    assert not slo.holds(_metrics(1.01))
    assert not slo.holds(_metrics(0.5, failed=1))
    assert slo.misses(_metrics(2.0, failed=3)) == ["3 requests failed", "ttft_p90 2 s > 1 s"]


def test_steady_ratio_leaves_out_warmup_and_drain() -> None:
    # two replicas; a lopsided burst at t=0 (warm-up) and t=9 (drain), even in between
    trace = QueueTrace(
        times=(0.0, 2.0, 4.0, 6.0, 9.0),
        queues=((8, 3, 2, 4, 6), (0, 1, 2, 2, 0)),
    )
    assert steady_queue_ratio(trace, 0.0, 10.0) == 2.0  # 8 of 8 on one of two
    assert steady_queue_ratio(trace, 1.0, 8.0) == pytest.approx(1.5)  # 3 of 4
    assert steady_queue_ratio(trace, 3.0, 8.0) == pytest.approx(4 * 2 / 6)
    assert steady_queue_ratio(QueueTrace(), 0.0, 1.0) == 1.0


def test_arrival_window_skips_follow_ups_and_defaults_to_a_tenth() -> None:
    def request(name: str, at: float, after: str | None = None) -> SimRequest:
        return SimRequest(name, at, "p", 1, (), 1, 1, after=after)

    window = ArrivalWindow()
    stream = [request("a", 10.0), request("b", 0.5, after="a"), request("c", 30.0)]
    assert list(window.watch(stream)) == stream
    assert window.steady(None) == (12.0, 30.0)
    assert window.steady(5.0) == (15.0, 30.0)


TINY = [
    "--workload", "b2b-saas",
    "--set", "groups=6", "--set", "users_per_group=2", "--set", "system_prompt_tokens=256",
    "--set", "question_tokens=32", "--set", "output_tokens=16",
    "--preset", "llama-3.1-8b-h100", "--replicas", "2",
    "--requests", "40", "--qps", "5,400", "--seed", "3", "--no-plots",
    "--policies", "round-robin,least-requests",
]  # fmt: skip


def test_bench_sim_with_slo_reports_goodput_first(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        sim_command,
        [*TINY, "--slo", "ttft_p90=20ms", "--goodput-steps", "2", "--out", str(tmp_path)],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    document = json.loads((tmp_path / "results.json").read_text())
    assert list(document) == ["workload", "preset", "replicas", "goodput", "runs"]
    assert [(g["policy"], g["slo"]) for g in document["goodput"]] == [
        ("round-robin", "ttft_p90=20ms"),
        ("least-requests", "ttft_p90=20ms"),
    ]
    runs = {(r["policy"], r["qps"]): r for r in document["runs"]}
    assert len(runs) == 4  # the search's runs are not sweep levels
    for entry in document["goodput"]:
        probes = entry["probes"]
        # 20 ms holds at 5 QPS and misses at 400 (TTFT p90 of the level runs)
        assert probes[:2] == [[5.0, True], [400.0, False]]
        assert runs[(entry["policy"], 400.0)]["ttft_p90_s"] > 0.02
        assert len(probes) == 4  # both levels, then two bisection runs
        assert "bound" not in entry
        assert "below" not in entry
        assert 5.0 < entry["qps"] < 400.0
        assert entry["qps"] == max(q for q, held in probes if held)
    for run in document["runs"]:
        assert run["max_queue_ratio_steady"] >= 1.0
    report = (tmp_path / "report.md").read_text()
    assert report.index("## Goodput") < report.index("## TTFT p90")
    assert "| round-robin | `ttft_p90=20ms` |" in report
    assert "--slo ttft_p90=20ms --goodput-steps 2" in report


def test_bench_sim_rejects_a_bad_slo_before_simulating(tmp_path: Path) -> None:
    result = CliRunner().invoke(sim_command, [*TINY, "--slo", "ttft_p90=1min"])
    assert result.exit_code != 0
    assert "use s or ms" in result.output
    assert "Traceback" not in result.output


def test_worker_processes_find_the_same_goodput(tmp_path: Path) -> None:
    args = [*TINY, "--slo", "ttft_p90=20ms", "--goodput-steps", "2"]
    for jobs, out in (("1", tmp_path / "a"), ("2", tmp_path / "b")):
        result = CliRunner().invoke(
            sim_command, [*args, "--jobs", jobs, "--out", str(out)], catch_exceptions=False
        )
        assert result.exit_code == 0, result.output
    first = json.loads((tmp_path / "a" / "results.json").read_text())
    assert first == json.loads((tmp_path / "b" / "results.json").read_text())


def test_a_trace_at_its_own_rate_has_no_levels_to_search(tmp_path: Path) -> None:
    trace = tmp_path / "t.jsonl"
    lines = [json.dumps({"arrival_s": i * 0.5, "prompt_tokens": 64, "output_tokens": 4})
             for i in range(10)]  # fmt: skip
    trace.write_text("\n".join(lines), encoding="utf-8")
    result = CliRunner().invoke(
        sim_command, ["--workload", str(trace), "--slo", "ttft_p90=1s", "--no-plots"]
    )
    assert result.exit_code != 0
    assert "give --qps" in result.output
