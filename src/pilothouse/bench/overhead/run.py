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
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import orjson
import yaml

from pilothouse.bench.loadgen import CpuMeter, LoadResult, LoadSpec, run_load
from pilothouse.bench.mock_upstream import MODEL
from pilothouse.bench.mock_upstream import READY_PREFIX as MOCK_READY
from pilothouse.bench.overhead.baseline import BASELINE, extract_source
from pilothouse.bench.overhead.governance import (
    GOVERNED,
    GOVERNED_REDIS,
    REDIS,
    bearer,
    check_governed,
    create_tenant,
    governance_block,
    judge_governance,
    ledger_requests,
    redis_server,
)
from pilothouse.bench.overhead.peer import judge_peer, peer_router
from pilothouse.bench.overhead.results import (
    SCHEMA,
    LevelResult,
    OverheadReport,
    TargetStats,
    _other_load,
    _pool,
)
from pilothouse.bench.overhead.tracing import (
    OTLP,
    RECEIVER_READY,
    TRACED,
    receiver_argv,
    spans_received,
    tracing_block,
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
    governance: bool = False
    """Also measure a gateway with governance in process (``governed``)."""
    redis: bool = False
    """With ``governance``, also one with limits and budgets in Redis (``governed-redis``)."""
    tracing: bool = False
    """Also measure a gateway exporting OTLP traces of every request (``traced``)."""
    baseline_rev: str | None = None
    """Also measure the gateway's code at this git revision (``baseline``)."""

    @property
    def targets(self) -> tuple[str, ...]:
        governed = (GOVERNED,) + ((GOVERNED_REDIS,) if self.redis else ())
        traced = (TRACED,) if self.tracing else ()
        peer = ("peer",) if self.peer else ()
        baseline = (BASELINE,) if self.baseline_rev else ()
        return TARGETS + (governed if self.governance else ()) + traced + baseline + peer


@dataclass(slots=True)
class _Targets:
    """Where each target listens, the process trees metered, the headers each target needs."""

    urls: dict[str, str] = field(default_factory=dict)
    pids: dict[str, int] = field(default_factory=dict)
    headers: dict[str, dict[str, str]] = field(default_factory=dict)


def _fleet_yaml(
    upstream: str,
    scheduler: str,
    governance: dict[str, object] | None = None,
    tracing: dict[str, object] | None = None,
) -> str:
    address = upstream.removeprefix("http://")
    gateway: dict[str, object] = {
        "host": "127.0.0.1",
        "port": 0,
        "scheduler": scheduler,
        "access_log": False,
    }
    if governance is not None:
        gateway["governance"] = governance
    fleet: dict[str, object] = {
        "apiVersion": "pilothouse.dev/v1alpha1",
        "kind": "Fleet",
        "models": [{"name": MODEL, "engine": "openai", "endpoints": [address]}],
        "gateway": gateway,
    }
    if tracing is not None:
        fleet["tracing"] = tracing
    return yaml.safe_dump(fleet, sort_keys=False)


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


_TREES = ("gateway", GOVERNED, GOVERNED_REDIS, TRACED, BASELINE, "peer")
"""Targets metered as a process tree, with their kernel part beside (``<name>_system``)."""


def _meters(pids: dict[str, int]) -> dict[str, CpuMeter]:
    meters: dict[str, CpuMeter] = {}
    for name in _TREES:
        if name in pids:
            tree = TreeCpuMeter(pids[name])
            meters[name] = tree.total
            meters[f"{name}_system"] = tree.system  # from the reading just before it
    if REDIS in pids:
        redis_pid = pids[REDIS]
        meters[REDIS] = lambda: process_tree_cpu_s(redis_pid)
    if OTLP in pids:
        otlp_pid = pids[OTLP]
        meters[OTLP] = lambda: process_tree_cpu_s(otlp_pid)
    upstream = pids["upstream"]
    return meters | {
        "upstream": lambda: process_tree_cpu_s(upstream),
        "client": self_cpu_s,
        "machine": machine_cpu_s,
    }


async def _run_pair(
    config: OverheadConfig, targets: _Targets, meters: dict[str, CpuMeter], pair: Pair
) -> dict[str, LoadResult]:
    (stream, concurrency), order = pair
    results: dict[str, LoadResult] = {}
    for target in order:
        spec = LoadSpec(
            url=targets.urls[target] + _CHAT,
            body=_request_body(stream),
            stream=stream,
            concurrency=concurrency,
            warmup_s=config.warmup_s,
            duration_s=config.duration_s,
            requests=config.requests,
            headers=targets.headers.get(target, {}),
        )
        results[target] = await run_load(spec, meters)
    return results


def _disturbed(results: dict[str, LoadResult], limit: float) -> bool:
    return any(_other_load(r.cpu_s, r.window_s) > limit for r in results.values())


async def _run_levels(
    config: OverheadConfig, targets: _Targets, progress: Progress | None
) -> tuple[list[LevelResult], int]:
    """Run every pair, repeating one that another process disturbed; also count the repeats."""
    meters = _meters(targets.pids)
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
            results = await _run_pair(config, targets, meters, pair)
            if attempt == config.retries or not _disturbed(results, config.max_other_load):
                break
            repeats += 1
            await asyncio.sleep(config.retry_pause_s)
        for target, result in results.items():
            collected.setdefault((pair[0], target), []).append(result)
    if progress is not None:
        progress("done", len(plan), len(plan))

    def pooled(level: Level, target: str) -> TargetStats | None:
        runs = collected.get((level, target))
        return _pool(runs) if runs else None

    levels = [
        LevelResult(
            stream=s,
            concurrency=c,
            direct=_pool(collected[((s, c), "direct")]),
            gateway=_pool(collected[((s, c), "gateway")]),
            peer=pooled((s, c), "peer"),
            governed=pooled((s, c), GOVERNED),
            governed_redis=pooled((s, c), GOVERNED_REDIS),
            traced=pooled((s, c), TRACED),
            baseline=pooled((s, c), BASELINE),
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


class _Services:
    """The processes one run starts, in one exit stack: every one is stopped, in reverse."""

    def __init__(self, config: OverheadConfig, log_dir: Path, stack: AsyncExitStack) -> None:
        self.config = config
        self.log_dir = log_dir
        self.stack = stack
        self.targets = _Targets()
        self.state_dirs: dict[str, Path] = {}

    async def child(
        self, name: str, argv: list[str], ready: str, env: dict[str, str] | None = None
    ) -> tuple[str, int]:
        process = ChildProcess(name, argv, self.log_dir, ready, env)
        self.stack.push_async_callback(process.stop)
        url = await process.start(self.config.startup_timeout_s)
        return url, process.pid

    async def gateway(
        self,
        name: str,
        upstream: str,
        governance: dict[str, object] | None = None,
        tracing: dict[str, object] | None = None,
        source: Path | None = None,
    ) -> None:
        """A gateway process; ``source``: the directory its ``pilothouse`` is imported from."""
        fleet = self.log_dir / f"{name}.yaml"
        fleet.write_text(_fleet_yaml(upstream, self.config.scheduler, governance, tracing))
        argv = [sys.executable, "-m", "pilothouse", "gateway", "-f", str(fleet)]
        env = None if source is None else {**os.environ, "PYTHONPATH": str(source)}
        url, pid = await self.child(name, argv, GATEWAY_READY, env)
        url = url.removesuffix("/v1")
        await _wait_ready(url, self.config.startup_timeout_s)
        self.targets.urls[name], self.targets.pids[name] = url, pid

    async def governed(self, name: str, upstream: str, redis_url: str | None = None) -> None:
        """A gateway with governance in a state directory of its own, and its key."""
        state_dir = self.log_dir / f"{name}-state"
        key = await asyncio.to_thread(create_tenant, state_dir)
        await self.gateway(name, upstream, governance_block(state_dir, redis_url))
        await check_governed(self.targets.urls[name], _request_body(False))
        self.targets.headers[name] = bearer(key)
        self.state_dirs[name] = state_dir

    async def start_all(self) -> _Targets:
        """The mock, the gateway, and what the config adds (governed gateways, the peer)."""
        config, targets = self.config, self.targets
        mock_argv = [sys.executable, "-m", "pilothouse.bench.mock_upstream", "--port", "0"]
        upstream, targets.pids["upstream"] = await self.child(
            "mock-upstream", mock_argv, MOCK_READY
        )
        targets.urls["direct"] = upstream
        await self.gateway("gateway", upstream)
        if config.governance:
            await self.governed(GOVERNED, upstream)
        if config.governance and config.redis:
            redis = redis_server(self.log_dir, config.startup_timeout_s)
            redis_url, targets.pids[REDIS] = await self.stack.enter_async_context(redis)
            await self.governed(GOVERNED_REDIS, upstream, redis_url)
        if config.tracing:  # a span sink of its own, then a gateway exporting to it
            endpoint, targets.pids[OTLP] = await self.child(OTLP, receiver_argv(), RECEIVER_READY)
            await self.gateway(TRACED, upstream, tracing=tracing_block(endpoint))
        if config.baseline_rev is not None:
            source = await asyncio.to_thread(
                extract_source, config.baseline_rev, self.log_dir / BASELINE
            )
            await self.gateway(BASELINE, upstream, source=source)
        if config.peer is not None:
            peer = peer_router(upstream, self.log_dir, config.startup_timeout_s)
            targets.urls["peer"], targets.pids["peer"] = await self.stack.enter_async_context(peer)
        return targets


async def run_overhead(config: OverheadConfig, progress: Progress | None = None) -> OverheadReport:
    """Start the mock, the gateway(s) (and the peer), run every level; always reaps them."""
    with tempfile.TemporaryDirectory(prefix="pilothouse-bench-") as tmp:
        async with AsyncExitStack() as stack:
            services = _Services(config, Path(tmp), stack)
            targets = await services.start_all()
            levels, repeats = await _run_levels(config, targets, progress)
        # The gateways stopped, their ledgers flushed: what each one's store holds.
        ledger = {
            name: await asyncio.to_thread(ledger_requests, state_dir)
            for name, state_dir in services.state_dirs.items()
        }
        spans = spans_received(Path(tmp)) if config.tracing else None
    return OverheadReport(
        config=config,
        machine=machine_info(),
        levels=levels,
        verdicts=judge(levels) + judge_peer(levels) + judge_governance(levels),
        repeated_pairs=repeats,
        ledger_requests=ledger,
        traced_spans=spans,
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
