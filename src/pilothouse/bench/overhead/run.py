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
import tempfile
from collections.abc import Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path

from pilothouse.bench.loadgen import CpuMeter, LoadResult, LoadSpec, run_load
from pilothouse.bench.overhead.baseline import BASELINE
from pilothouse.bench.overhead.governance import (
    GOVERNED,
    GOVERNED_REDIS,
    REDIS,
    judge_governance,
    ledger_requests,
)
from pilothouse.bench.overhead.peer import judge_peer
from pilothouse.bench.overhead.results import (
    SCHEMA,
    LevelResult,
    OverheadReport,
    TargetStats,
    _other_load,
    _pool,
)
from pilothouse.bench.overhead.services import Services, Targets, request_body
from pilothouse.bench.overhead.tracing import (
    OTLP,
    TRACED,
    spans_received,
)
from pilothouse.bench.overhead.verdicts import judge
from pilothouse.bench.processes import (
    TreeCpuMeter,
    machine_cpu_s,
    process_tree_cpu_s,
    self_cpu_s,
)

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
    config: OverheadConfig, targets: Targets, meters: dict[str, CpuMeter], pair: Pair
) -> dict[str, LoadResult]:
    (stream, concurrency), order = pair
    results: dict[str, LoadResult] = {}
    for target in order:
        spec = LoadSpec(
            url=targets.urls[target] + _CHAT,
            body=request_body(stream),
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
    config: OverheadConfig, targets: Targets, progress: Progress | None
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


async def run_overhead(config: OverheadConfig, progress: Progress | None = None) -> OverheadReport:
    """Start the mock, the gateway(s) (and the peer), run every level; always reaps them."""
    with tempfile.TemporaryDirectory(prefix="pilothouse-bench-") as tmp:
        async with AsyncExitStack() as stack:
            services = Services(config, Path(tmp), stack)
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
