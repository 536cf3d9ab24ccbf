"""``pilothouse bench transport``: the upstream clients alone, CPU per request, in one run.

Starts the mock upstream as its own process, then in this process drives each transport
kind (``create_transport``) with a closed loop of ``concurrency`` workers: send, read the
whole body (or every chunk of a stream), close, repeat. CPU per request is this process's
user + system time over the measured requests: everything the gateway's upstream leg
would spend, plus the (identical) worker loop. Kinds alternate per round, so machine
noise falls on both.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import click
import orjson

from pilothouse.bench.mock_upstream import MODEL
from pilothouse.bench.mock_upstream import READY_PREFIX as MOCK_READY
from pilothouse.bench.processes import ChildProcess, self_cpu_s
from pilothouse.transport import TRANSPORT_KINDS, UpstreamRequest, create_transport

SCHEMA = "pilothouse.bench.transport/v1"
_DONE = b"data: [DONE]"


@dataclass(frozen=True, slots=True)
class ClientResult:
    kind: str
    stream: bool
    concurrency: int
    requests: int
    cpu_ms_per_request: float


def _request(stream: bool) -> UpstreamRequest:
    doc: dict[str, object] = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}
    if stream:
        doc["stream"] = True
    return UpstreamRequest("/v1/chat/completions", orjson.dumps(doc), (("x-request-id", "b"),))


async def _drive(kind: str, address: str, stream: bool, concurrency: int, total: int) -> float:
    """CPU seconds this process spent on ``total`` requests through ``kind``."""
    transport = create_transport(kind)
    request, left = _request(stream), [total]

    async def worker() -> None:
        while left[0] > 0:
            left[0] -= 1
            resp = await transport.send(address, request)
            tail = b""
            async for chunk in resp.chunks():
                tail = chunk
            await resp.aclose()
            if resp.status != 200 or (stream and _DONE not in tail):
                raise click.ClickException(f"{kind}: bad answer {resp.status} {tail[-80:]!r}")

    try:
        left[0] = max(concurrency, total // 10)  # warm-up: connections open, caches hot
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        left[0] = total
        before = self_cpu_s()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return self_cpu_s() - before
    finally:
        await transport.aclose()


async def run_clients(
    address: str, kinds: tuple[str, ...], streams: tuple[bool, ...], levels: tuple[int, ...],
    requests: int, rounds: int,
) -> list[ClientResult]:  # fmt: skip
    cpu: dict[tuple[str, bool, int], float] = {}
    for round_no in range(rounds):
        order = kinds if round_no % 2 == 0 else kinds[::-1]
        for stream in streams:
            for concurrency in levels:
                for kind in order:
                    spent = await _drive(kind, address, stream, concurrency, requests)
                    key = (kind, stream, concurrency)
                    cpu[key] = cpu.get(key, 0.0) + spent
    return [
        ClientResult(kind, s, c, requests * rounds, cpu[(kind, s, c)] * 1e3 / (requests * rounds))
        for s in streams
        for c in levels
        for kind in kinds
    ]


async def _with_mock(kinds: tuple[str, ...], levels: tuple[int, ...], requests: int,
                     rounds: int) -> list[ClientResult]:  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="pilothouse-bench-") as tmp:
        mock = ChildProcess(
            "mock-upstream",
            [sys.executable, "-m", "pilothouse.bench.mock_upstream", "--port", "0"],
            Path(tmp),
            MOCK_READY,
        )
        try:
            address = (await mock.start(60.0)).removeprefix("http://")
            return await run_clients(address, kinds, (False, True), levels, requests, rounds)
        finally:
            await mock.stop()


@click.command("transport")
@click.option(
    "-c",
    "--concurrency",
    type=click.IntRange(1, 1024),
    multiple=True,
    default=(16, 64),
    show_default=True,
    help="Closed-loop workers; repeatable.",
)
@click.option(
    "--requests",
    type=click.IntRange(10),
    default=5000,
    show_default=True,
    help="Measured requests per kind and level in each round.",
)
@click.option(
    "--rounds",
    type=click.IntRange(1, 20),
    default=2,
    show_default=True,
    help="Repeat every level; the kinds' order flips every round.",
)
@click.option(
    "--json",
    "json_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Also write the numbers to this JSON file.",
)
def transport_command(concurrency: tuple[int, ...], requests: int, rounds: int,
                      json_path: Path | None) -> None:  # fmt: skip
    """CPU per request of each upstream client (http1, aiohttp) against the mock engine."""
    from pilothouse.bench.cli import run_async

    kinds = tuple(sorted(TRANSPORT_KINDS))
    results = run_async(_with_mock(kinds, tuple(dict.fromkeys(concurrency)), requests, rounds))
    for r in results:
        mode = "stream" if r.stream else "plain"
        click.echo(f"{mode:6} c={r.concurrency:<4} {r.kind:8} {r.cpu_ms_per_request:.4f} ms/req")
    if json_path is not None:
        doc = {"schema": SCHEMA, "results": [asdict(r) for r in results]}
        json_path.write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2))
