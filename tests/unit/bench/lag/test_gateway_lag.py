"""``bench gateway-lag``: the lag histogram's arithmetic, and the command at tiny scale."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner
from prometheus_client import CollectorRegistry, generate_latest

from pilothouse.bench.lag.cli import gateway_lag_command
from pilothouse.bench.lag.gateway import GatewayLagConfig, prompts
from pilothouse.bench.lag.histogram import LagHistogram, parse_lag
from pilothouse.bench.processes import BenchError
from pilothouse.gateway.lag_probe import LoopLagProbe

INF = math.inf


def hist(*counts: float, total: float = 0.0) -> LagHistogram:
    return LagHistogram((0.001, 0.002, 0.005, INF), counts, total)


def test_a_scrape_of_the_probes_histogram_parses_back() -> None:
    registry = CollectorRegistry()
    probe = LoopLagProbe(registry, 0.001)
    for lag in (0.0, 0.0015, 0.0015, 0.02):
        probe.histogram.observe(lag)
    parsed = parse_lag(generate_latest(registry).decode())
    assert parsed.samples == 4
    assert parsed.total_s == pytest.approx(0.023)
    assert parsed.bounds[-1] == INF
    assert parsed.max_bound() == 0.025
    with pytest.raises(BenchError, match="loop_lag_probe_s"):
        parse_lag("# nothing here\n")


def test_two_scrapes_subtract_to_the_runs_samples() -> None:
    run = hist(10, 20, 30, 30, total=1.0).minus(hist(5, 5, 5, 5, total=0.4))
    assert run.counts == (5, 15, 25, 25)
    assert run.total_s == pytest.approx(0.6)
    with pytest.raises(BenchError, match="buckets changed"):
        run.minus(LagHistogram((0.001, INF), (0, 0), 0.0))


@pytest.mark.parametrize(
    ("counts", "q", "expected"),
    [
        ((50, 100, 100, 100), 50, 0.001),  # the 50th sample is the first bucket's edge
        ((50, 100, 100, 100), 75, 0.0015),  # half-way through the second bucket
        ((0, 0, 0, 100), 99, 0.005),  # all in +Inf: the last finite edge
        ((0, 0, 0, 0), 50, math.nan),
    ],
)
def test_quantiles_interpolate_inside_their_bucket(
    counts: tuple[float, ...], q: float, expected: float
) -> None:
    value = hist(*counts).quantile(q)
    assert (math.isnan(value) and math.isnan(expected)) or value == pytest.approx(expected)


@pytest.mark.parametrize(
    ("counts", "within"),
    [((0, 99, 100, 100), True), ((0, 98, 100, 100), False), ((0, 0, 0, 0), False)],
)
def test_a_bound_at_a_bucket_edge_is_judged_exactly(
    counts: tuple[float, ...], within: bool
) -> None:
    assert hist(*counts).within(0.002) is within


def test_prompts_share_system_prompts_and_have_the_length_asked() -> None:
    chats = prompts(GatewayLagConfig(requests=20, prompt_tokens=100, groups=2))
    assert len(chats) == 20
    assert len({chat[0]["content"] for chat in chats}) <= 2
    assert all(len(chat[1]["content"].split()) == 50 for chat in chats)


def test_the_command_at_tiny_scale(tmp_path: Path) -> None:
    """Real processes on loopback: two simulators and a gateway, per mode."""
    out = tmp_path / "lag.json"
    args = ["--tokenizer", "dummy", "--replicas", "2", "--requests", "6", "--concurrency", "3",
            "--prompt-tokens", "64", "--json", str(out)]  # fmt: skip
    result = CliRunner().invoke(gateway_lag_command, args)
    assert result.exit_code == 0, result.output
    report = orjson.loads(out.read_bytes())
    assert [r["mode"] for r in report["results"]] == ["process", "before", "inline"]
    for r in report["results"]:
        assert (r["ok"], r["errors"]) == (6, 0)
        assert r["lag"]["samples"] > 0  # the probe ran inside the gateway during the run
    assert "event-loop lag p99, tokenizing before the decision (process)" in result.output
    bad = CliRunner().invoke(gateway_lag_command, ["--modes", "sideways"])
    assert bad.exit_code == 2


_PIN_PROBE = """
import asyncio, json, os, threading
from pilothouse.bench.lag.server import pin_threads

async def main():
    allowed = os.sched_getaffinity(0)
    stop = threading.Event()
    worker = threading.Thread(target=stop.wait)
    worker.start()
    task = asyncio.create_task(pin_threads(max(allowed)))
    await asyncio.sleep(0.5)
    print(json.dumps({"allowed": sorted(allowed), "loop": sorted(os.sched_getaffinity(0)),
                      "worker": sorted(os.sched_getaffinity(worker.native_id))}))
    task.cancel()
    stop.set()

asyncio.run(main())
"""


@pytest.mark.skipif(
    not hasattr(os, "sched_getaffinity") or len(os.sched_getaffinity(0)) < 2,
    reason="needs Linux and 2 CPUs",
)
def test_pinning_gives_the_loop_a_cpu_of_its_own_and_moves_other_threads_off_it() -> None:
    out = subprocess.run(
        [sys.executable, "-c", _PIN_PROBE], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    seen = orjson.loads(out)
    loop_cpu = max(seen["allowed"])
    assert seen["loop"] == [loop_cpu]
    assert seen["worker"] == [cpu for cpu in seen["allowed"] if cpu != loop_cpu]
