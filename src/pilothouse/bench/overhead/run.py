"""Gateway overhead: direct calls against calls through the gateway, in one run.

Starts the mock upstream and a gateway in front of it as separate processes on loopback,
then for every (stream, concurrency) level runs the closed-loop generator once directly
against the mock and once through the gateway, interleaved (the order flips every round).
Reported per level: requests/s, p50/p99 latency, added latency (gateway minus direct) and
the gateway's CPU time per request: user + system time of the gateway's process tree from
``/proc/<pid>/stat``, read at the two edges of the measured window, divided by the requests
completed in it. Load generator, mock and gateway share the machine's cores, so CPU per
request is the figure that carries across machines; requests/s include contention.
"""

from __future__ import annotations

import asyncio
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import orjson
import yaml

from pilothouse.bench.loadgen import CpuMeter, LoadResult, LoadSpec, run_load
from pilothouse.bench.mock_upstream import MODEL
from pilothouse.bench.mock_upstream import READY_PREFIX as MOCK_READY
from pilothouse.bench.overhead.peer import judge_peer, peer_router
from pilothouse.bench.overhead.results import (
    SCHEMA,
    LevelResult,
    OverheadReport,
    TargetStats,
    _other_load,
    _pool,
)
from pilothouse.bench.overhead.verdicts import judge
from pilothouse.bench.processes import (
    BenchError,
    ChildProcess,
    TreeCpuMeter,
    machine_cpu_s,
    process_tree_cpu_s,
    self_cpu_s,
)

GATEWAY_READY = "pilothouse is ready: "
TARGETS = ("direct", "gateway")
_CHAT = "/v1/chat/completions"

Progress = Callable[[str, int, int], None]
"""Called before each direct/gateway pair with (description, pairs done, pairs in total)."""


@dataclass(frozen=True, slots=True)
class OverheadConfig:
    concurrency: tuple[int, ...] = (1, 16, 64)
    streams: tuple[bool, ...] = (False, True)
    warmup_s: float = 1.0
    duration_s: float | None = 5.0
    requests: int | None = None
    rounds: int = 1
    scheduler: str = "default"
    retries: int = 2
    max_other_load: float = 0.15
    retry_pause_s: float = 3.0
    startup_timeout_s: float = 60.0
    peer: str | None = None
    """A peer router measured beside the gateway (``vllm-router``), or none."""

    @property
    def targets(self) -> tuple[str, ...]:
        return TARGETS + (("peer",) if self.peer else ())


def _fleet_yaml(upstream: str, scheduler: str) -> str:
    address = upstream.removeprefix("http://")
    return yaml.safe_dump(
        {
            "apiVersion": "pilothouse.dev/v1alpha1",
            "kind": "Fleet",
            "models": [{"name": MODEL, "engine": "openai", "endpoints": [address]}],
            "gateway": {
                "host": "127.0.0.1",
                "port": 0,
                "scheduler": scheduler,
                "access_log": False,
            },
        },
        sort_keys=False,
    )


async def _wait_ready(base_url: str, timeout_s: float) -> None:
    """Poll the gateway's /ready until its replica is ready (the monitor probes it)."""
    deadline = time.monotonic() + timeout_s
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            try:
                async with session.get(f"{base_url}/ready") as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    raise BenchError(f"the gateway at {base_url} never reported ready")


def _request_body(stream: bool) -> bytes:
    doc: dict[str, object] = {
        "model": MODEL,
        "messages": [{"role": "user", "content": "Say hello in one short sentence."}],
        "max_tokens": 16,
    }
    if stream:
        doc["stream"] = True
    return orjson.dumps(doc)


Level = tuple[bool, int]
Pair = tuple[Level, tuple[str, ...]]


def _schedule(config: OverheadConfig) -> list[Pair]:
    """Every (level, target order) pair in run order; the order flips every round."""
    pairs: list[Pair] = []
    for round_no in range(config.rounds):
        targets = config.targets
        order = targets if round_no % 2 == 0 else targets[::-1]
        pairs += [((s, c), order) for s in config.streams for c in config.concurrency]
    return pairs


def _meters(gateway_pid: int, upstream_pid: int, peer_pid: int | None) -> dict[str, CpuMeter]:
    gateway = TreeCpuMeter(gateway_pid)
    meters: dict[str, CpuMeter] = {
        "gateway": gateway.total,
        "gateway_system": gateway.system,  # from the reading "gateway" just took
    }
    if peer_pid is not None:
        peer = TreeCpuMeter(peer_pid)
        meters |= {"peer": peer.total, "peer_system": peer.system}
    return meters | {
        "upstream": lambda: process_tree_cpu_s(upstream_pid),
        "client": self_cpu_s,
        "machine": machine_cpu_s,
    }


async def _run_pair(
    config: OverheadConfig, urls: dict[str, str], meters: dict[str, CpuMeter], pair: Pair
) -> dict[str, LoadResult]:
    (stream, concurrency), order = pair
    results: dict[str, LoadResult] = {}
    for target in order:
        spec = LoadSpec(
            url=urls[target] + _CHAT,
            body=_request_body(stream),
            stream=stream,
            concurrency=concurrency,
            warmup_s=config.warmup_s,
            duration_s=config.duration_s,
            requests=config.requests,
        )
        results[target] = await run_load(spec, meters)
    return results


def _disturbed(results: dict[str, LoadResult], limit: float) -> bool:
    return any(_other_load(r.cpu_s, r.window_s) > limit for r in results.values())


async def _run_levels(
    config: OverheadConfig,
    urls: dict[str, str],
    pids: tuple[int, int, int | None],
    progress: Progress | None,
) -> tuple[list[LevelResult], int]:
    """Run every pair, repeating one that another process disturbed; also count the repeats."""
    meters = _meters(*pids)
    collected: dict[tuple[Level, str], list[LoadResult]] = {}
    plan, repeats = _schedule(config), 0
    for done, pair in enumerate(plan):
        (stream, concurrency), _ = pair
        for attempt in range(config.retries + 1):
            if progress is not None:
                again = f" (repeat {attempt}: machine busy)" if attempt else ""
                mode = "stream" if stream else "plain"
                what = " vs ".join(config.targets)
                progress(f"{what}, {mode} c={concurrency}{again}", done, len(plan))
            results = await _run_pair(config, urls, meters, pair)
            if attempt == config.retries or not _disturbed(results, config.max_other_load):
                break
            repeats += 1
            await asyncio.sleep(config.retry_pause_s)
        for target, result in results.items():
            collected.setdefault((pair[0], target), []).append(result)
    if progress is not None:
        progress("done", len(plan), len(plan))
    levels = [
        LevelResult(
            stream=s,
            concurrency=c,
            direct=_pool(collected[((s, c), "direct")]),
            gateway=_pool(collected[((s, c), "gateway")]),
            peer=_pool(collected[((s, c), "peer")]) if config.peer else None,
        )
        for s in config.streams
        for c in config.concurrency
    ]
    return levels, repeats


def machine_info() -> dict[str, object]:
    return {
        "cpus": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "processor": platform.processor() or platform.machine(),
    }


async def _measure(
    config: OverheadConfig,
    urls: dict[str, str],
    pids: tuple[int, int],
    log_dir: Path,
    progress: Progress | None,
) -> tuple[list[LevelResult], int]:
    """Run the levels, with the peer router started beside the gateway when one is asked."""
    if config.peer is None:
        return await _run_levels(config, urls, (*pids, None), progress)
    async with peer_router(urls["direct"], log_dir, config.startup_timeout_s) as (url, pid):
        return await _run_levels(config, urls | {"peer": url}, (*pids, pid), progress)


async def run_overhead(config: OverheadConfig, progress: Progress | None = None) -> OverheadReport:
    """Start the mock, the gateway (and the peer), run every level; always reaps the children."""
    with tempfile.TemporaryDirectory(prefix="pilothouse-bench-") as tmp:
        log_dir = Path(tmp)
        mock = ChildProcess(
            "mock-upstream",
            [sys.executable, "-m", "pilothouse.bench.mock_upstream", "--port", "0"],
            log_dir,
            MOCK_READY,
        )
        fleet = log_dir / "fleet.yaml"
        gateway = ChildProcess(
            "gateway",
            [sys.executable, "-m", "pilothouse", "gateway", "-f", str(fleet)],
            log_dir,
            GATEWAY_READY,
        )
        try:
            upstream = await mock.start(config.startup_timeout_s)
            fleet.write_text(_fleet_yaml(upstream, config.scheduler))
            gateway_url = (await gateway.start(config.startup_timeout_s)).removesuffix("/v1")
            await _wait_ready(gateway_url, config.startup_timeout_s)
            urls = {"direct": upstream, "gateway": gateway_url}
            pids = (gateway.pid, mock.pid)
            levels, repeats = await _measure(config, urls, pids, log_dir, progress)
        finally:
            await gateway.stop()
            await mock.stop()
    return OverheadReport(
        config=config,
        machine=machine_info(),
        levels=levels,
        verdicts=judge(levels) + judge_peer(levels),
        repeated_pairs=repeats,
    )


__all__ = [
    "SCHEMA",
    "LevelResult",
    "OverheadConfig",
    "OverheadReport",
    "TargetStats",
    "_other_load",
    "process_tree_cpu_s",
    "run_overhead",
]
