"""bench live's options, plan and command line; one real run against an engine sim."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner

from pilothouse.bench.live.cli import live_command
from pilothouse.bench.live.fleet import MIN_PROBE_S, gateway_fleet_file, policy_label
from pilothouse.bench.live.peers import peer_command
from pilothouse.bench.live.plan import parse_levels, parse_policies
from pilothouse.config.fleet import load_fleet
from pilothouse.errors import ConfigError
from pilothouse.servers.sim import SimServer, SimSettings


def test_levels_open_loop_first() -> None:
    levels = parse_levels("3,10", "8")
    assert [(lv.mode, lv.value) for lv in levels] == [("qps", 3), ("qps", 10), ("concurrency", 8)]
    for qps, concurrency in ((None, None), ("0", None), (None, "x")):
        with pytest.raises(ConfigError):
            parse_levels(qps, concurrency)


def test_policies_are_checked_up_front() -> None:
    assert parse_policies("default, round-robin") == ("default", "round-robin")
    with pytest.raises(ConfigError):
        parse_policies("no-such-config")
    with pytest.raises(ConfigError, match="unknown vllm-router policy"):
        parse_policies("vllm-router:fastest")


def test_peer_command(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    binary = tmp_path / "vllm-router"
    binary.write_text("#!/bin/sh\n")
    monkeypatch.setattr("sys.executable", str(tmp_path / "python"))
    argv = peer_command("vllm-router:cache_aware", 9000, ["http://a:1", "http://b:2"], 9001)
    assert argv[0] == str(binary)
    assert argv[argv.index("--worker-urls") + 1 : argv.index("--policy")] == [
        "http://a:1",
        "http://b:2",
    ]
    assert argv[argv.index("--policy") + 1] == "cache_aware"
    assert argv[argv.index("--port") + 1] == "9000"


@pytest.mark.parametrize(
    "args",
    [
        ["--qps", "1"],  # neither --url nor --launch-sim
        ["--url", "http://x", "--launch-sim", "2", "--qps", "1"],
        ["--url", "http://x"],  # no level
        ["--url", "http://x", "--qps", "1", "--engine-arg", "max-num-seqs=4"],
        ["--url", "http://x", "--qps", "1", "--workload", "nope"],
    ],
)
def test_bad_options_fail_before_anything_starts(args: list[str]) -> None:
    result = CliRunner().invoke(live_command, args)
    assert result.exit_code == 1
    assert "Error" in result.output


@pytest.fixture
def engine_url() -> Iterator[str]:
    """An engine sim in a thread of its own (the command runs its own event loop)."""
    loop = asyncio.new_event_loop()
    started = threading.Event()
    urls: list[str] = []
    stop = asyncio.Event()

    async def serve() -> None:
        async with SimServer(SimSettings(port=0, time_scale=20.0)) as server:
            urls.append(server.base_url)
            started.set()
            await stop.wait()

    thread = threading.Thread(target=loop.run_until_complete, args=(serve(),))
    thread.start()
    try:
        assert started.wait(10)
        yield urls[0]
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(10)
        loop.close()


def test_a_run_against_a_url_writes_results_and_report(engine_url: str, tmp_path: Path) -> None:
    args = [
        "--url", f"{engine_url}/v1", "--metrics-url", f"{engine_url}/metrics",
        "--reset-prefix-cache", "--time-scale", "20", "--workload", "multi-turn-chat",
        "--set", "system_tokens=64", "--set", "user_tokens=16", "--set", "answer_tokens=8",
        "--set", "think_s=0.2", "--qps", "20", "--concurrency", "2", "--requests", "12",
        "--out", str(tmp_path), "--no-plots", "--sample-interval", "0.05",
    ]  # fmt: skip
    result = CliRunner().invoke(live_command, args)
    assert result.exit_code == 0, result.output
    doc = orjson.loads((tmp_path / "results.json").read_bytes())
    assert [run["completed"] for run in doc["runs"]] == [12, 12]
    assert all(run["cache_hit_rate"] > 0 for run in doc["runs"])  # follow-ups reuse context
    assert doc["runs"][1]["concurrency"] == 2
    report = (tmp_path / "report.md").read_text()
    assert "--reset-prefix-cache" in report
    assert "## Notes" not in report  # everything was measured


def test_generated_gateway_fleet_file_is_valid(tmp_path: Path) -> None:
    policy = tmp_path / "mine.yaml"
    path = gateway_fleet_file(
        tmp_path / "f.yaml", "m", ["127.0.0.1:1", "127.0.0.1:2"], str(policy), 0.01
    )
    spec = load_fleet(path)
    assert spec.models[0].endpoints == ["127.0.0.1:1", "127.0.0.1:2"]
    assert spec.models[0].engine == "sim"
    assert spec.gateway.scheduler == str(policy.resolve())
    assert (spec.gateway.port, spec.gateway.access_log) == (0, False)
    assert spec.gateway.probe_interval_s == MIN_PROBE_S  # 0.01 wall s is clamped
    assert policy_label(str(policy)) == "mine"
