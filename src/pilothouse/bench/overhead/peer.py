"""``bench overhead --peer vllm-router``: a peer router in front of the same mock, same run.

The peer (vllm-router 0.1.17, Rust, ``pip install 'pilothouse[peers]'``) runs as its own
process with ``--policy round_robin`` over the one mock replica, and is measured exactly
as the gateway is: the same closed-loop levels, interleaved with the direct and gateway
runs, CPU per request from its process tree. The issue's acceptance is relative to it:
gateway CPU per request at most 2x the peer's at c=16 and c=64 (plain and streamed), and
the gateway's added p99 at the top concurrency at most 2x the peer's.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp

from pilothouse.bench.live.peers import VLLM_ROUTER, peer_command
from pilothouse.bench.overhead.results import LevelResult
from pilothouse.bench.overhead.verdicts import Verdict
from pilothouse.bench.processes import BenchError

PEERS = (VLLM_ROUTER,)
RATIO_LIMIT = 2.0
_JUDGED_LEVELS = (16, 64)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _wait_healthy(url: str, proc: asyncio.subprocess.Process, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2.0)) as session:
        while time.monotonic() < deadline and proc.returncode is None:
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                async with session.get(url) as resp:
                    if resp.status == 200:
                        return
            await asyncio.sleep(0.1)
    raise BenchError(f"{VLLM_ROUTER} did not become healthy at {url}")


@contextlib.asynccontextmanager
async def peer_router(
    upstream: str, log_dir: Path, timeout_s: float
) -> AsyncIterator[tuple[str, int]]:
    """Run vllm-router over ``upstream``; yields its URL and pid, always stops it."""
    port = _free_port()
    argv = peer_command(f"{VLLM_ROUTER}:round_robin", port, [upstream], _free_port())
    with (log_dir / "peer.log").open("wb") as log:
        proc = await asyncio.create_subprocess_exec(
            *argv, stdout=log, stderr=log, stdin=asyncio.subprocess.DEVNULL
        )
    try:
        url = f"http://127.0.0.1:{port}"
        await _wait_healthy(f"{url}/health", proc, timeout_s)
        yield url, proc.pid
    finally:
        if proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 10.0)
            except TimeoutError:
                proc.kill()
                await proc.wait()


def _ratio_verdict(stream: bool, level: LevelResult) -> Verdict:
    mode = "streamed " if stream else ""
    ratio = level.gateway_cpu_ms / level.peer_cpu_ms if level.peer_cpu_ms > 0 else float("inf")
    return Verdict(
        f"gateway/peer CPU per {mode}request at c={level.concurrency}",
        ratio,
        RATIO_LIMIT,
        "x",
        ratio <= RATIO_LIMIT,
        f"gateway {level.gateway_cpu_ms:.3f} ms, peer {level.peer_cpu_ms:.3f} ms",
    )


def judge_peer(levels: list[LevelResult]) -> list[Verdict]:
    """The issue's relative targets; empty when no peer was measured."""
    measured = [lv for lv in levels if lv.peer is not None]
    if not measured:
        return []
    verdicts = [
        _ratio_verdict(lv.stream, lv) for lv in measured if lv.concurrency in _JUDGED_LEVELS
    ]
    top = max(lv.concurrency for lv in measured)
    for lv in (lv for lv in measured if lv.concurrency == top):
        limit = RATIO_LIMIT * max(lv.peer_added_p99_ms, 0.0)
        mode = "stream" if lv.stream else "plain"
        verdicts.append(
            Verdict(
                f"added p99 at c={top} ({mode}) vs 2x peer",
                lv.added_p99_ms,
                limit,
                "ms",
                lv.added_p99_ms <= limit,
                f"peer added {lv.peer_added_p99_ms:+.2f} ms",
            )
        )
    return verdicts
