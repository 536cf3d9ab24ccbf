"""The processes one ``bench overhead`` run measures, started and stopped together.

The mock upstream, the gateway in front of it, and what the run's config adds: governed
gateways (in process, in Redis), a tracing gateway with its span sink, the gateway's code at
a baseline revision, and a peer router. Each is a child process on loopback whose readiness
is awaited; every one is stopped, in reverse, when the run's exit stack closes.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import aiohttp
import orjson
import yaml

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
    redis_server,
)
from pilothouse.bench.overhead.peer import peer_router
from pilothouse.bench.overhead.tracing import (
    OTLP,
    RECEIVER_READY,
    TRACED,
    receiver_argv,
    tracing_block,
)
from pilothouse.bench.processes import BenchError, ChildProcess

if TYPE_CHECKING:
    from pilothouse.bench.overhead.run import OverheadConfig

GATEWAY_READY = "pilothouse is ready: "


def request_body(stream: bool) -> bytes:
    """The chat completion every load sends (streamed or not)."""
    doc: dict[str, object] = {
        "model": MODEL,
        "messages": [{"role": "user", "content": "Say hello in one short sentence."}],
        "max_tokens": 16,
    }
    if stream:
        doc["stream"] = True
    return orjson.dumps(doc)


@dataclass(slots=True)
class Targets:
    """Where each target listens, the process trees metered, the headers each target needs."""

    urls: dict[str, str] = field(default_factory=dict)
    pids: dict[str, int] = field(default_factory=dict)
    headers: dict[str, dict[str, str]] = field(default_factory=dict)


def fleet_yaml(
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


async def wait_ready(base_url: str, timeout_s: float) -> None:
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


class Services:
    """The processes one run starts, in one exit stack: every one is stopped, in reverse."""

    def __init__(self, config: OverheadConfig, log_dir: Path, stack: AsyncExitStack) -> None:
        self.config = config
        self.log_dir = log_dir
        self.stack = stack
        self.targets = Targets()
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
        fleet.write_text(fleet_yaml(upstream, self.config.scheduler, governance, tracing))
        argv = [sys.executable, "-m", "pilothouse", "gateway", "-f", str(fleet)]
        env = None if source is None else {**os.environ, "PYTHONPATH": str(source)}
        url, pid = await self.child(name, argv, GATEWAY_READY, env)
        url = url.removesuffix("/v1")
        await wait_ready(url, self.config.startup_timeout_s)
        self.targets.urls[name], self.targets.pids[name] = url, pid

    async def governed(self, name: str, upstream: str, redis_url: str | None = None) -> None:
        """A gateway with governance in a state directory of its own, and its key."""
        state_dir = self.log_dir / f"{name}-state"
        key = await asyncio.to_thread(create_tenant, state_dir)
        await self.gateway(name, upstream, governance_block(state_dir, redis_url))
        await check_governed(self.targets.urls[name], request_body(False))
        self.targets.headers[name] = bearer(key)
        self.state_dirs[name] = state_dir

    async def start_all(self) -> Targets:
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
