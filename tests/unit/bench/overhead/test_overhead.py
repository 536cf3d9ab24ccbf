"""`pilothouse bench overhead` at tiny scale: structure and sanity, never wall-clock limits."""

from __future__ import annotations

import json
import math
import os
from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest
from aiohttp import web
from click.testing import CliRunner

from pilothouse.bench.cli import bench
from pilothouse.bench.loadgen import LoadSpec, percentile, run_load, summarize
from pilothouse.bench.mock_upstream import (
    STREAM_EVENTS,
    chat_completion_body,
    chat_stream_events,
    create_mock_app,
)
from pilothouse.bench.overhead.run import SCHEMA, _other_load, process_tree_cpu_s

TARGET_KEYS = {
    "requests", "errors", "window_s", "rps", "p50_ms", "p90_ms", "p99_ms", "mean_ms", "max_ms",
    "cpu_ms_per_request", "other_load_cores", "first_error",
}  # fmt: skip
VERDICTS = {
    "gateway CPU per request",
    "gateway CPU per streamed request",
    "added p99 latency at c=4",
    "failed requests",
}


@pytest.mark.parametrize(
    ("values", "q", "expected"),
    [
        ([5.0], 50, 5.0),
        ([1.0, 2.0, 3.0, 4.0], 0, 1.0),
        ([1.0, 2.0, 3.0, 4.0], 100, 4.0),
        ([1.0, 2.0, 3.0, 4.0], 50, 2.5),
        ([0.0, 10.0], 99, 9.9),
        ([float(i) for i in range(101)], 99, 99.0),
    ],
)
def test_percentile_interpolates_linearly(values: list[float], q: float, expected: float) -> None:
    assert percentile(values, q) == pytest.approx(expected)


def test_percentile_of_nothing_is_nan_and_bad_q_is_refused() -> None:
    assert math.isnan(percentile([], 50))
    assert math.isnan(summarize([]).p99_ms)
    with pytest.raises(ValueError, match="outside"):
        percentile([1.0], 101)


def test_load_spec_needs_exactly_one_window_kind() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        LoadSpec(url="http://x", body=b"", stream=False, concurrency=1, warmup_s=0)
    with pytest.raises(ValueError, match="exactly one"):
        LoadSpec("http://x", b"", False, 1, 0, duration_s=1.0, requests=5)


def test_mock_answers_are_a_330_byte_completion_and_a_12_event_stream() -> None:
    body = orjson.loads(chat_completion_body())
    assert 300 <= len(chat_completion_body()) <= 360
    assert body["usage"]["completion_tokens"] == STREAM_EVENTS
    events = chat_stream_events()
    assert len(events) == STREAM_EVENTS + 2
    assert all(e.startswith(b"data: ") and e.endswith(b"\n\n") for e in events)
    assert orjson.loads(events[-2][6:])["usage"]["total_tokens"] > 0
    assert events[-1] == b"data: [DONE]\n\n"


@pytest.fixture
async def mock_url() -> AsyncIterator[str]:
    runner = web.AppRunner(create_mock_app(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        yield f"http://{host}:{port}"
    finally:
        await runner.cleanup()


@pytest.mark.parametrize("stream", [False, True])
async def test_window_counts_requests_and_reads_meters_exactly_at_its_edges(
    mock_url: str, stream: bool
) -> None:
    reads: list[int] = []

    def meter() -> float:
        reads.append(1)
        return float(len(reads))

    body = orjson.dumps({"model": "mock-model", "messages": [], "stream": stream})
    spec = LoadSpec(
        url=f"{mock_url}/v1/chat/completions", body=body, stream=stream, concurrency=3,
        warmup_s=0.05, requests=40,
    )  # fmt: skip
    result = await run_load(spec, {"probe": meter})
    assert (result.completed, result.errors, result.first_error) == (40, 0, None)
    assert len(result.latencies_s) == 40
    assert all(x > 0 for x in result.latencies_s)
    assert result.window_s > 0
    assert result.cpu_s == {"probe": 1.0}  # read once when the window opened, once at close
    assert len(reads) == 2


async def test_errors_are_counted_not_timed(mock_url: str) -> None:
    spec = LoadSpec(
        url=f"{mock_url}/v1/nowhere", body=b"{}", stream=False, concurrency=2, warmup_s=0,
        requests=5,
    )  # fmt: skip
    result = await run_load(spec, {})
    assert result.completed == 0
    assert result.errors >= 5
    assert result.first_error is not None
    assert "404" in result.first_error


@pytest.mark.parametrize(
    ("cpu", "window_s", "expected"),
    [
        ({"gateway": 1.0, "upstream": 0.5, "client": 0.5, "machine": 3.0}, 2.0, 0.5),
        ({"gateway": 1.0, "upstream": 0.5, "client": 0.5, "machine": 1.9}, 2.0, 0.0),
        ({"gateway": 1.0}, 2.0, 0.0),
        ({"machine": 1.0}, 0.0, 0.0),
    ],
)
def test_other_load_is_machine_cpu_minus_ours_per_second(
    cpu: dict[str, float], window_s: float, expected: float
) -> None:
    assert _other_load(cpu, window_s) == pytest.approx(expected)


def test_process_tree_cpu_of_this_process_is_positive() -> None:
    sum(i * i for i in range(200_000))  # burn a little CPU
    assert process_tree_cpu_s(os.getpid()) > 0


def _live_children() -> list[int]:
    me = os.getpid()
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    fields = fh.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == me and fields[0] != "Z":
                found.append(int(entry))
    return found


def test_overhead_command_runs_end_to_end_at_tiny_scale(tmp_path: Path) -> None:
    out = tmp_path / "overhead.json"
    before = set(_live_children())
    args = ["overhead", "-c", "1", "-c", "4", "--warmup", "0.2", "--requests", "150"]
    args += ["--retries", "0"]  # a busy test machine must not stretch the run
    result = CliRunner().invoke(bench, [*args, "--json", str(out)], catch_exceptions=False)

    assert result.exit_code == 0, result.output
    assert "gateway CPU per request" in result.output
    assert set(_live_children()) <= before, "the mock or the gateway outlived the command"
    doc = json.loads(out.read_text())
    assert doc["schema"] == SCHEMA
    assert isinstance(doc["passed"], bool)
    assert doc["other_load_cores_max"] >= 0
    assert doc["repeated_pairs"] == 0
    assert doc["config"]["concurrency"] == [1, 4]
    assert doc["machine"]["cpus"] >= 1
    assert {v["name"] for v in doc["verdicts"]} == VERDICTS
    assert [(lv["stream"], lv["concurrency"]) for lv in doc["levels"]] == [
        (False, 1), (False, 4), (True, 1), (True, 4),
    ]  # fmt: skip
    for level in doc["levels"]:
        for target in ("direct", "gateway"):
            stats = level[target]
            assert set(stats) == TARGET_KEYS
            assert (stats["requests"], stats["errors"]) == (150, 0), stats["first_error"]
            assert stats["rps"] > 0
            assert 0 < stats["p50_ms"] <= stats["p99_ms"] <= stats["max_ms"]
            assert set(stats["cpu_ms_per_request"]) == {
                "gateway", "gateway_system", "upstream", "client", "machine",
            }  # fmt: skip
        assert level["gateway_cpu_ms_per_request"] > 0
        cpu = level["gateway"]["cpu_ms_per_request"]
        assert 0 <= cpu["gateway_system"] <= cpu["gateway"]
        assert (
            level["gateway_cpu_ms_per_request"] == level["gateway"]["cpu_ms_per_request"]["gateway"]
        )
        assert level["added_p99_ms"] == pytest.approx(
            level["gateway"]["p99_ms"] - level["direct"]["p99_ms"]
        )
    failed = next(v for v in doc["verdicts"] if v["name"] == "failed requests")
    assert (failed["value"], failed["passed"]) == (0, True)
