"""`pilothouse bench toolgateway`: option plumbing, scheduling, result math and rendering
(no processes, no wall-clock thresholds)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from click.testing import CliRunner
from rich.console import Console

from pilothouse.bench.cli import bench
from pilothouse.bench.toolgateway import cli as tg_cli
from pilothouse.bench.toolgateway.results import (
    DIRECT,
    GATEWAY,
    PASSTHROUGH,
    SCHEMA,
    Sample,
    ToolGatewayBenchConfig,
    ToolGatewayReport,
    build_report,
    pool,
    schedule,
)
from pilothouse.bench.toolgateway.run import POLICY, fleet_yaml
from pilothouse.config.fleet import load_fleet
from pilothouse.toolgateway.policy import ToolPolicy

MS = 1e-3


def _sample(target: str, latencies_ms: list[float], **kw: object) -> Sample:
    values = {"round": 0, "errors": 0, "window_s": 1.0, "cpu_s": {}} | kw
    return Sample(target, latencies_s=[x * MS for x in latencies_ms], **values)  # type: ignore[arg-type]


def _report(passthrough: bool = True, gateway_ms: float = 3.0) -> ToolGatewayReport:
    config = ToolGatewayBenchConfig(calls=3, rounds=1, passthrough=passthrough)
    samples = [
        _sample(DIRECT, [1.0, 2.0, 3.0], cpu_s={"upstream": 0.003}),
        _sample(GATEWAY, [gateway_ms, gateway_ms + 1, gateway_ms + 2], cpu_s={"proxy": 0.006}),
    ]
    if passthrough:
        samples.append(_sample(PASSTHROUGH, [2.0, 2.5, 3.0]))
    return build_report(config, {"cpus": 2}, samples)


# -- options -------------------------------------------------------------------------------


def test_options_reach_the_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    seen: list[ToolGatewayBenchConfig] = []

    def fake_run(config: ToolGatewayBenchConfig, console: Console) -> ToolGatewayReport:
        seen.append(config)
        return _report()

    monkeypatch.setattr(tg_cli, "_run_with_progress", fake_run)
    out = tmp_path / "tg.json"
    args = ["toolgateway", "--calls", "7", "-c", "3", "--rounds", "2", "--warmup", "0"]
    result = CliRunner().invoke(bench, [*args, "--no-passthrough", "--json-out", str(out)])
    assert result.exit_code == 0, result.output
    assert seen == [
        ToolGatewayBenchConfig(calls=7, concurrency=3, rounds=2, warmup_calls=0, passthrough=False)
    ]
    doc = json.loads(out.read_text())
    assert doc["schema"] == SCHEMA
    assert doc["added"] == {"p50_ms": pytest.approx(2.0), "p99_ms": pytest.approx(2.0)}
    assert "FAIL added p50 latency per tools/call: 2.000 ms" in result.output


def test_defaults_and_fail_on_miss(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[ToolGatewayBenchConfig] = []

    def fake_run(config: ToolGatewayBenchConfig, console: Console) -> ToolGatewayReport:
        seen.append(config)
        return _report()

    monkeypatch.setattr(tg_cli, "_run_with_progress", fake_run)
    assert CliRunner().invoke(bench, ["toolgateway"]).exit_code == 0
    assert seen[0] == ToolGatewayBenchConfig()
    assert seen[0].targets == (DIRECT, GATEWAY, PASSTHROUGH)
    assert CliRunner().invoke(bench, ["toolgateway", "--fail-on-miss"]).exit_code == 1


def test_a_pass_exits_zero_with_fail_on_miss(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tg_cli, "_run_with_progress", lambda c, con: _report(gateway_ms=1.5))
    result = CliRunner().invoke(bench, ["toolgateway", "--fail-on-miss"])
    assert result.exit_code == 0, result.output
    assert "PASS added p50 latency per tools/call: 0.500 ms" in result.output


@pytest.mark.parametrize("bad", [["--calls", "0"], ["-c", "0"], ["--rounds", "0"]])
def test_bad_options_are_refused(bad: list[str]) -> None:
    assert CliRunner().invoke(bench, ["toolgateway", *bad]).exit_code == 2


def test_config_checks_its_own_values() -> None:
    with pytest.raises(ValueError, match="calls"):
        ToolGatewayBenchConfig(calls=0)
    with pytest.raises(ValueError, match="warmup"):
        ToolGatewayBenchConfig(warmup_calls=-1)


# -- schedule ------------------------------------------------------------------------------


def test_rounds_interleave_and_the_order_flips() -> None:
    plan = schedule(ToolGatewayBenchConfig(rounds=3))
    assert plan == [
        (0, DIRECT), (0, GATEWAY), (0, PASSTHROUGH),
        (1, PASSTHROUGH), (1, GATEWAY), (1, DIRECT),
        (2, DIRECT), (2, GATEWAY), (2, PASSTHROUGH),
    ]  # fmt: skip
    assert schedule(ToolGatewayBenchConfig(rounds=2, passthrough=False)) == [
        (0, DIRECT), (0, GATEWAY), (1, GATEWAY), (1, DIRECT),
    ]  # fmt: skip


# -- result math ---------------------------------------------------------------------------


def test_pool_merges_rounds() -> None:
    stats = pool(
        [
            _sample(GATEWAY, [1.0, 3.0], errors=1, window_s=0.5, cpu_s={"proxy": 0.004}),
            _sample(GATEWAY, [2.0, 4.0], round=1, window_s=0.5, cpu_s={"proxy": 0.004},
                    first_error="boom"),
        ]
    )  # fmt: skip
    assert stats.calls == 4
    assert stats.errors == 1
    assert stats.calls_per_s == pytest.approx(4.0)
    assert stats.p50_ms == pytest.approx(2.5)
    assert stats.p99_ms == pytest.approx(3.97)
    assert stats.mean_ms == pytest.approx(2.5)
    assert stats.max_ms == pytest.approx(4.0)
    assert stats.cpu_ms_per_call == {"proxy": pytest.approx(2.0)}
    assert stats.round_p50_ms == [pytest.approx(2.0), pytest.approx(3.0)]
    assert stats.first_error == "boom"


def test_pool_of_nothing_is_nan_not_an_error() -> None:
    stats = pool([_sample(GATEWAY, [], errors=2, window_s=0.0, cpu_s={"proxy": 0.1})])
    assert (stats.calls, stats.errors, stats.calls_per_s) == (0, 2, 0.0)
    assert math.isnan(stats.p50_ms)
    assert math.isnan(stats.cpu_ms_per_call["proxy"])


def test_added_latency_splits_into_the_sdk_and_ours() -> None:
    report = _report()
    assert (report.added.p50_ms, report.added.p99_ms) == (pytest.approx(2.0), pytest.approx(2.0))
    assert report.sdk is not None
    assert report.sdk.p50_ms == pytest.approx(0.5)
    assert report.ours is not None
    assert report.ours.p50_ms == pytest.approx(1.5)
    assert report.sdk.p50_ms + report.ours.p50_ms == pytest.approx(report.added.p50_ms)
    assert not report.passed
    assert [v.passed for v in report.verdicts] == [False, True]


def test_without_the_pass_through_there_is_no_split() -> None:
    report = _report(passthrough=False)
    assert report.sdk is None
    assert report.ours is None
    doc = report.to_json()
    assert doc["sdk_added"] is None
    assert doc["pilothouse_added"] is None
    assert set(doc["targets"]) == {DIRECT, GATEWAY}  # type: ignore[arg-type]


def test_verdicts_judge_the_target_and_failures() -> None:
    assert _report(gateway_ms=2.0).passed  # +1.0 ms: at the limit passes
    config = ToolGatewayBenchConfig(calls=1, rounds=1, passthrough=False)
    failing = build_report(config, {}, [_sample(DIRECT, [1.0]), _sample(GATEWAY, [1.2], errors=1)])
    assert [v.passed for v in failing.verdicts] == [True, False]
    nothing = build_report(config, {}, [_sample(DIRECT, [1.0]), _sample(GATEWAY, [], errors=3)])
    assert not nothing.verdicts[0].passed  # NaN never passes


def test_json_document_is_complete() -> None:
    doc = _report().to_json()
    assert set(doc) == {
        "schema", "machine", "config", "targets", "added", "sdk_added", "pilothouse_added",
        "verdicts", "passed",
    }  # fmt: skip
    assert doc["config"]["calls"] == 3  # type: ignore[index]
    gateway = doc["targets"][GATEWAY]  # type: ignore[index]
    assert gateway["cpu_ms_per_call"] == {"proxy": pytest.approx(2.0)}
    json.dumps(doc)


def test_table_and_lines_render() -> None:
    console = Console(width=200, record=True)
    console.print(tg_cli.render_table(_report()))
    for line in tg_cli.summary_lines(_report()):
        console.print(line)
    text = console.export_text()
    assert "tool gateway" in text
    assert "SDK pass-through" in text
    assert "+2.000" in text
    assert "the MCP SDK's share (pass-through - direct): +0.500 ms p50" in text
    assert "pilothouse's share (gateway - pass-through): +1.500 ms p50" in text


# -- setup -----------------------------------------------------------------------------


def test_the_fleet_and_policy_the_gateway_gets(tmp_path: Path) -> None:
    policy = tmp_path / "tools.cedar"
    policy.write_text(POLICY)
    fleet_file = tmp_path / "fleet.yaml"
    fleet_file.write_text(fleet_yaml("http://127.0.0.1:1/mcp", tmp_path / "state", policy))
    fleet = load_fleet(fleet_file)
    assert fleet.tools is not None
    assert fleet.gateway.governance is not None
    assert fleet.tools.policy == policy
    assert [s.url for s in fleet.tools.servers] == ["http://127.0.0.1:1/mcp"]
    ToolPolicy.load(policy)  # parses: the run fails early, not on the first call
