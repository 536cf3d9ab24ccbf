"""Tool gateway overhead: ``tools/call`` straight to an MCP server against through the
governed gateway, in one run.

Setup, all on 127.0.0.1 in a temporary directory:

1. a governance store (SQLite), migrated, with one org, team and API key;
2. the upstream: an MCP server with an ``echo`` tool over streamable HTTP, as a process
   (:mod:`.servers`);
3. the gateway as a process, ``python -m pilothouse toolgateway -f fleet.yaml``, with a
   Cedar policy file (not the default policy), pinning and the audit log on;
4. the gateway's first listing of the upstream is approved through
   :class:`~pilothouse.governance.tool_store.ToolStore` (so ``echo__echo`` is pinned), and
   the run waits until the gateway lists the tool;
5. optionally the SDK-only pass-through proxy (:mod:`.servers`) in front of the same
   upstream.

Measurement: per round and target (the order flips every round), ``concurrency`` workers
each open their own session with the official SDK client over streamable HTTP, make
``warmup_calls`` unmeasured calls, wait for each other, then make ``calls`` calls back to
back, each timed from the ``call_tool`` call to its parsed result. The CPU time of the
upstream and of the proxy in front of it (gateway or pass-through) is read from /proc at
the edges of the measured window. The client's own cost is in every target alike, so it
cancels out of the added latency.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx2
import yaml
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from pilothouse.bench.overhead.run import machine_info
from pilothouse.bench.processes import BenchError, ChildProcess, process_tree_cpu_s
from pilothouse.bench.toolgateway.results import (
    DIRECT,
    GATEWAY,
    PASSTHROUGH,
    Sample,
    ToolGatewayBenchConfig,
    ToolGatewayReport,
    build_report,
    schedule,
)
from pilothouse.bench.toolgateway.servers import ECHO_TOOL
from pilothouse.bench.toolgateway.servers import READY_PREFIX as SERVER_READY
from pilothouse.config.tools import SEPARATOR
from pilothouse.governance.store import SqlStore
from pilothouse.governance.tool_store import ToolStore
from pilothouse.toolgateway.cli import READY_PREFIX as GATEWAY_READY

SERVER = "echo"
TEAM = "bench"
POLICY = f"""\
@id("bench-team-may-use-echo")
permit (principal in Team::"{TEAM}", action, resource in Server::"{SERVER}");

@id("no-egress-after-untrusted-output")
forbid (principal, action == Action::"call", resource)
when {{ resource.labels.contains("egress") && context.taint.contains("untrusted_output") }};
"""
"""Two policies a real deployment would have: the call is decided by evaluating both."""
ARGUMENTS = {"text": "hello from the tool gateway benchmark"}

Progress = Callable[[str, int, int], None]
"""Called before each measured window with (description, windows done, windows in all)."""


@dataclass(frozen=True, slots=True)
class _Target:
    url: str
    tool: str
    key: str | None
    meters: Mapping[str, Callable[[], float]]


def provision(state_dir: Path) -> str:
    """Migrate the governance store the gateway will open; return a new API key."""
    state_dir.mkdir(parents=True, exist_ok=True)
    store = SqlStore(f"sqlite:///{state_dir / 'governance.db'}")
    try:
        store.migrate()
        store.create_org("bench")
        store.create_team("bench", TEAM)
        key, _ = store.create_key(TEAM, "bench-agent")
    finally:
        store.close()
    return key


def approve_pins(state_dir: Path) -> int:
    """Pin every tool the gateway observed of the upstream; return how many."""
    store = SqlStore(f"sqlite:///{state_dir / 'governance.db'}")
    try:
        return len(ToolStore(store).approve(SERVER, by="pilothouse bench toolgateway"))
    finally:
        store.close()


def fleet_yaml(upstream_url: str, state_dir: Path, policy: Path) -> str:
    """A fleet whose only job is the tool gateway (the model entry is never called)."""
    return yaml.safe_dump(
        {
            "apiVersion": "pilothouse.dev/v1alpha1",
            "kind": "Fleet",
            "models": [{"name": "unused", "engine": "openai", "endpoints": ["127.0.0.1:9"]}],
            "gateway": {"governance": {"state_dir": str(state_dir)}},
            "tools": {
                "servers": [{"name": SERVER, "url": upstream_url}],
                "policy": str(policy),
            },
        },
        sort_keys=False,
    )


@contextlib.asynccontextmanager
async def session(url: str, key: str | None) -> AsyncIterator[Client]:
    """One agent's session: the official SDK client over streamable HTTP."""
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    async with httpx2.AsyncClient(headers=headers, timeout=30) as http:
        transport = streamable_http_client(url, http_client=http)
        async with Client(transport, mode="legacy", cache=None) as client:
            yield client


async def _wait_listed(url: str, key: str, tool: str, timeout_s: float) -> None:
    """Until the gateway lists ``tool`` (it re-reads pins at most every second)."""
    deadline = time.monotonic() + timeout_s
    async with session(url, key) as client:
        while time.monotonic() < deadline:
            if any(t.name == tool for t in (await client.list_tools()).tools):
                return
            await asyncio.sleep(0.2)
    raise BenchError(f"the tool gateway never listed {tool} after its pins were approved")


@dataclass(slots=True)
class _Tally:
    latencies: list[float]
    errors: int = 0
    first_error: str | None = None

    def fail(self, what: str) -> None:
        self.errors += 1
        if self.first_error is None:
            self.first_error = what[:500]


async def _call(client: Client, tool: str, tally: _Tally | None) -> None:
    started = time.perf_counter()
    try:
        result = await client.call_tool(tool, dict(ARGUMENTS))
    except Exception as exc:  # a failed call is counted, never fatal to the run
        if tally is not None:
            tally.fail(f"{type(exc).__name__}: {exc}")
        return
    elapsed = time.perf_counter() - started
    if tally is None:
        return
    if result.is_error:
        tally.fail(str(result.content)[:500])
    else:
        tally.latencies.append(elapsed)


async def measure(
    config: ToolGatewayBenchConfig, name: str, target: _Target, round_no: int
) -> Sample:
    """One measured window of one target (see the module docstring)."""
    tally = _Tally([])
    barrier = asyncio.Barrier(config.concurrency + 1)

    async def worker() -> None:
        try:
            async with session(target.url, target.key) as client:
                for _ in range(config.warmup_calls):
                    await _call(client, target.tool, None)
                await barrier.wait()  # all warm: the window opens
                for _ in range(config.calls):
                    await _call(client, target.tool, tally)
                await barrier.wait()  # all done: the window closes before sessions end
        except BaseException:
            await barrier.abort()  # nobody waits for a worker that is gone
            raise

    workers = [asyncio.create_task(worker()) for _ in range(config.concurrency)]
    try:
        await barrier.wait()
        cpu_start = {k: meter() for k, meter in target.meters.items()}
        started = time.perf_counter()
        await barrier.wait()
        window = time.perf_counter() - started
        cpu = {k: meter() - cpu_start[k] for k, meter in target.meters.items()}
        await asyncio.gather(*workers)
    except Exception as exc:
        failed = _root_cause(workers, exc)
        raise BenchError(f"{name}: a session with {target.url} failed: {failed!r}") from failed
    finally:
        for task in workers:
            task.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
    return Sample(name, round_no, tally.latencies, tally.errors, window, cpu, tally.first_error)


def _root_cause(workers: list[asyncio.Task[None]], exc: BaseException) -> BaseException:
    """The first worker's own failure, not the broken barrier the others then saw."""
    for task in workers:
        if task.done() and not task.cancelled():
            found = task.exception()
            if found is not None and not isinstance(found, asyncio.BrokenBarrierError):
                return found
    return exc


def _cpu(pid: int) -> Callable[[], float]:
    return lambda: process_tree_cpu_s(pid)


async def run_toolgateway_bench(
    config: ToolGatewayBenchConfig, progress: Progress | None = None
) -> ToolGatewayReport:
    """Start everything, run every window, stop everything (always)."""
    python = sys.executable
    with tempfile.TemporaryDirectory(prefix="pilothouse-bench-tg-") as tmp:
        base = Path(tmp)
        state_dir, policy, fleet = base / "state", base / "tools.cedar", base / "fleet.yaml"
        key = provision(state_dir)
        policy.write_text(POLICY)
        servers = [python, "-m", "pilothouse.bench.toolgateway.servers"]
        echo = ChildProcess("echo", [*servers, "echo"], base, SERVER_READY)
        gateway = ChildProcess(
            "toolgateway",
            [python, "-m", "pilothouse", "toolgateway", "-f", str(fleet), "--port", "0"],
            base,
            GATEWAY_READY,
        )
        passthrough: ChildProcess | None = None
        try:
            if progress is not None:
                progress("starting the MCP server and the tool gateway", 0, 0)
            upstream_url = await echo.start(config.startup_timeout_s)
            fleet.write_text(fleet_yaml(upstream_url, state_dir, policy))
            gateway_url = await gateway.start(config.startup_timeout_s)
            if approve_pins(state_dir) < 1:
                raise BenchError("the tool gateway observed no tools of the echo server")
            federated = f"{SERVER}{SEPARATOR}{ECHO_TOOL}"
            await _wait_listed(gateway_url, key, federated, config.startup_timeout_s)
            upstream_cpu = _cpu(echo.pid)
            targets = {
                DIRECT: _Target(upstream_url, ECHO_TOOL, None, {"upstream": upstream_cpu}),
                GATEWAY: _Target(
                    gateway_url,
                    federated,
                    key,
                    {"upstream": upstream_cpu, "proxy": _cpu(gateway.pid)},
                ),
            }
            if config.passthrough:
                passthrough = ChildProcess(
                    "passthrough",
                    [*servers, "passthrough", "--upstream", upstream_url],
                    base,
                    SERVER_READY,
                )
                url = await passthrough.start(config.startup_timeout_s)
                targets[PASSTHROUGH] = _Target(
                    url, ECHO_TOOL, None, {"upstream": upstream_cpu, "proxy": _cpu(passthrough.pid)}
                )
            samples = await _run_windows(config, targets, progress)
        finally:
            if passthrough is not None:
                await passthrough.stop()
            await gateway.stop()
            await echo.stop()
    return build_report(config, machine_info(), samples)


async def _run_windows(
    config: ToolGatewayBenchConfig, targets: Mapping[str, _Target], progress: Progress | None
) -> list[Sample]:
    plan = schedule(config)
    samples: list[Sample] = []
    for done, (round_no, name) in enumerate(plan):
        if progress is not None:
            progress(f"round {round_no + 1}/{config.rounds}: {name}", done, len(plan))
        samples.append(await measure(config, name, targets[name], round_no))
    if progress is not None:
        progress("done", len(plan), len(plan))
    return samples
