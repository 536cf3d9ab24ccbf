"""``pilothouse bench gateway-lag``: the gateway's event-loop lag under concurrent long prompts.

Issue #10 asks for an event-loop lag p99 of at most 2 ms inside the gateway while 64
requests with 6 k-token prompts go through it, with ``precise-prefix`` over KV events. Per
mode (``gateway.tokenize``: ``before``, the producer's worker thread, ``process``, its
tokenizer process, and ``inline``, the old path)
this starts a fresh stack of real processes on loopback: ``replicas`` simulator engines
publishing KV events (``pilothouse engine sim --kv-events-port``), and a gateway
(:mod:`pilothouse.bench.lag.server`) with ``kv_events: true``, the ``precise-prefix``
scheduler of ``bench decision`` and its lag probe on (``loop_lag_probe_s``). It sends
``requests`` chat completions ``concurrency`` at a time and reads the probe's histogram
``pilothouse_event_loop_lag_seconds`` from ``/metrics`` before and after: the difference is
the loop's lag during the run, measured inside the gateway process.

Prompts are English filler words (about one token each): a system prompt shared by a group
of requests plus a fresh question, half the length each. ``--tokenizer dummy``: the engines
are ``sim`` endpoints and the gateway tokenizes as they do (their KV events match);
``smollm2``: the endpoints are declared ``vllm`` and the gateway tokenizes with the embedded
SmolLM2's real Hugging Face tokenizer (``gateway.tokenizers``). The simulators still
tokenize with their own tokenizer, so their events never match those ids: the decision
falls back to the routing history, and its index lookups stop at the first block.
"""

from __future__ import annotations

import asyncio
import os
import random
import socket
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import orjson
import yaml

from pilothouse.bench.decision.run import PRECISE, config_for
from pilothouse.bench.lag.histogram import LagHistogram, scrape_lag
from pilothouse.bench.lag.server import READY
from pilothouse.bench.loadgen import percentile
from pilothouse.bench.processes import BenchError, ChildProcess
from pilothouse.engines.tokenizer import FILLER_WORDS

MODEL = "bench-model"
MODES = ("process", "before", "inline")
DEFAULT_MODES = MODES
SIM_READY = "sim engine is listening: "
Progress = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class GatewayLagConfig:
    replicas: int = 4
    requests: int = 256
    concurrency: int = 64
    prompt_tokens: int = 6000
    groups: int = 8
    max_tokens: int = 8
    tokenizer: str = "smollm2"
    modes: tuple[str, ...] = DEFAULT_MODES
    interval_s: float = 0.001
    target_ms: float = 2.0
    time_scale: float = 50.0
    seed: int = 0
    startup_timeout_s: float = 60.0
    pin: bool = False
    """Linux: the gateway's loop thread alone on one CPU (the highest this process may use),
    everything else (load generator, simulators, the gateway's other threads) on the rest."""


@dataclass(frozen=True, slots=True)
class ModeResult:
    mode: str
    lag: LagHistogram
    ok: int
    errors: int
    elapsed_s: float
    latency_p50_ms: float
    latency_p99_ms: float
    load_before: str  # /proc/loadavg when the mode started

    def to_json(self) -> dict[str, object]:
        return {
            "mode": self.mode, "ok": self.ok, "errors": self.errors, "elapsed_s": self.elapsed_s,
            "latency_p50_ms": self.latency_p50_ms, "latency_p99_ms": self.latency_p99_ms,
            "load_before": self.load_before, "lag": self.lag.to_json(),
        }  # fmt: skip


@dataclass(slots=True)
class GatewayLagReport:
    config: GatewayLagConfig
    results: list[ModeResult] = field(default_factory=list)

    def judged(self) -> ModeResult | None:
        """The first run that tokenizes before the decision (``before`` or ``process``)."""
        return next((r for r in self.results if r.mode != "inline"), None)

    @property
    def passed(self) -> bool:
        r = self.judged()
        return r is not None and r.errors == 0 and r.lag.within(self.config.target_ms / 1000)

    def to_json(self) -> dict[str, object]:
        c = self.config
        return {
            "schema": "pilothouse.bench.gateway-lag/v1", "cpus": os.cpu_count(),
            "replicas": c.replicas, "requests": c.requests, "concurrency": c.concurrency,
            "prompt_tokens": c.prompt_tokens, "tokenizer": c.tokenizer,
            "interval_s": c.interval_s, "target_ms": c.target_ms, "pinned": c.pin,
            "passed": self.passed,
            "results": [r.to_json() for r in self.results],
        }  # fmt: skip


def prompts(config: GatewayLagConfig) -> list[list[dict[str, str]]]:
    """Chats: one of ``groups`` system prompts plus a fresh question, half the tokens each."""
    rng = random.Random(config.seed)
    half = max(1, config.prompt_tokens // 2)

    def text() -> str:
        return " ".join(rng.choices(FILLER_WORDS, k=half))

    systems = [text() for _ in range(config.groups)]
    return [
        [{"role": "system", "content": rng.choice(systems)}, {"role": "user", "content": text()}]
        for _ in range(config.requests)
    ]


def run_gateway_lag(
    config: GatewayLagConfig, progress: Progress = lambda _: None
) -> GatewayLagReport:
    report = GatewayLagReport(config)
    chats = prompts(config)
    with tempfile.TemporaryDirectory(prefix="pilothouse-lag-") as tmp:
        tokenizers = _tokenizer_dir(config.tokenizer, Path(tmp), progress)
        for mode in config.modes:
            progress(f"{mode}: starting {config.replicas} simulators and the gateway")
            log_dir = Path(tmp) / mode
            log_dir.mkdir()
            result = asyncio.run(_run_mode(config, mode, chats, tokenizers, log_dir, progress))
            report.results.append(result)
    return report


def _tokenizer_dir(name: str, tmp: Path, progress: Progress) -> dict[str, str]:
    """``gateway.tokenizers`` for the tokenizer asked (``dummy``: the simulator's own)."""
    if name == "dummy":
        return {}
    if name != "smollm2":
        raise BenchError(f"unknown tokenizer {name!r}: dummy or smollm2")
    from pilothouse.endpoints.gguf_tokenizer import save_gguf_tokenizer
    from pilothouse.servers.llamacpp.model import embedded_model_path

    progress("writing the smollm2 tokenizer")
    return {MODEL: str(save_gguf_tokenizer(embedded_model_path(), tmp / "smollm2"))}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _run_mode(
    config: GatewayLagConfig,
    mode: str,
    chats: list[list[dict[str, str]]],
    tokenizers: dict[str, str],
    log_dir: Path,
    progress: Progress,
) -> ModeResult:
    children: list[ChildProcess] = []
    allowed = os.sched_getaffinity(0) if config.pin else set()
    loop_cpu = max(allowed) if allowed else None
    if loop_cpu is not None:
        if len(allowed) < 2:
            raise BenchError("--pin needs at least 2 CPUs: one for the gateway's loop")
        os.sched_setaffinity(0, allowed - {loop_cpu})  # this process and every child
    try:
        url = await _start_stack(config, mode, tokenizers, log_dir, children, loop_cpu)
        load = " ".join(f"{x:.2f}" for x in os.getloadavg())
        progress(f"{mode}: {config.requests} requests, {config.concurrency} at a time")
        return await _measure(config, mode, url, chats, load)
    finally:
        for child in reversed(children):
            await child.stop()
        if allowed:
            os.sched_setaffinity(0, allowed)


async def _start_stack(
    config: GatewayLagConfig,
    mode: str,
    tokenizers: dict[str, str],
    log_dir: Path,
    children: list[ChildProcess],
    loop_cpu: int | None,
) -> str:
    """Start the simulators and the gateway; the gateway's base URL (without ``/v1``)."""
    engine = "vllm" if tokenizers else "sim"
    endpoints = []
    for i in range(config.replicas):
        events, replay = _free_port(), _free_port()
        argv = [sys.executable, "-m", "pilothouse", "engine", "sim", "--port", "0",
                "--model", MODEL, "--time-scale", str(config.time_scale), "--seed", str(i),
                "--kv-events-port", str(events), "--kv-replay-port", str(replay)]  # fmt: skip
        child = ChildProcess(f"sim-{i}", argv, log_dir, SIM_READY)
        children.append(child)
        address = (await child.start(config.startup_timeout_s)).removeprefix("http://")
        labels = {"pilothouse.dev/kv-events": str(events), "pilothouse.dev/kv-replay": str(replay)}
        endpoints.append({"name": f"sim-{i}", "address": address.rstrip("/"), "model": MODEL,
                          "engine": engine, "labels": labels})  # fmt: skip
    (log_dir / "endpoints.json").write_bytes(orjson.dumps(endpoints))
    scheduler = config_for(PRECISE).model_dump(mode="json", exclude_unset=True, by_alias=True)
    (log_dir / "scheduler.yaml").write_text(yaml.safe_dump(scheduler))
    gateway = {"port": 0, "scheduler": str(log_dir / "scheduler.yaml"), "kv_events": True,
               "tokenizers": tokenizers, "tokenize": mode, "access_log": False,
               "loop_lag_probe_s": config.interval_s}  # fmt: skip
    fleet = {"models": [{"name": MODEL, "engine": engine}], "gateway": gateway}
    (log_dir / "fleet.yaml").write_text(yaml.safe_dump(fleet))
    argv = [sys.executable, "-m", "pilothouse.bench.lag.server",
            str(log_dir / "fleet.yaml"), str(log_dir / "endpoints.json")]  # fmt: skip
    if loop_cpu is not None:
        argv.append(str(loop_cpu))
    child = ChildProcess("gateway", argv, log_dir, READY)
    children.append(child)
    return (await child.start(config.startup_timeout_s)).removesuffix("/v1")


async def _measure(
    config: GatewayLagConfig, mode: str, url: str, chats: list[list[dict[str, str]]], load: str
) -> ModeResult:
    latencies: list[float] = []
    errors = 0
    timeout = aiohttp.ClientTimeout(total=600)
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(url, timeout=timeout, connector=connector) as http:
        await _post(http, chats[0], config.max_tokens)  # warm-up: subscriptions, first request
        await asyncio.sleep(1.0)  # let the KV subscriber apply the warm-up's events
        before = await scrape_lag(http)
        pending = iter(chats)

        async def worker() -> None:
            nonlocal errors
            for chat in pending:
                started = time.perf_counter()
                if await _post(http, chat, config.max_tokens):
                    latencies.append((time.perf_counter() - started) * 1000)
                else:
                    errors += 1

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(config.concurrency)))
        elapsed = time.perf_counter() - started
        after = await scrape_lag(http)
    ordered = sorted(latencies)
    p50, p99 = (percentile(ordered, q) if ordered else float("nan") for q in (50, 99))
    return ModeResult(mode, after.minus(before), len(ordered), errors, elapsed, p50, p99, load)


async def _post(http: aiohttp.ClientSession, chat: list[dict[str, str]], max_tokens: int) -> bool:
    body = {"model": MODEL, "messages": chat, "max_tokens": max_tokens}
    async with http.post("/v1/chat/completions", json=body) as response:
        await response.read()
        return response.status == 200
