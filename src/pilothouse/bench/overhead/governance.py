"""``bench overhead --governance``: what auth + limits + budgets + ledger cost per request.

Beside the plain gateway, the same run starts a **governed** gateway in front of the same mock:
``gateway.governance`` with its SQLite store and ledger in a temporary state directory, one
organisation → team → key created beforehand through :class:`SqlStore`, and every request sent
with ``Authorization: Bearer <key>``. Every governance step runs on every request, none ever
refuses: the key has requests/min, tokens/min and concurrent limits, the team a token budget
and the organisation a money budget, all far above what a run can use, and the model has a
per-token price, so money is reserved and settled too. With ``--redis`` a third gateway,
**governed-redis**, keeps limits and budgets in a ``redis-server`` the bench starts itself.

The targets are interleaved with ``direct`` and ``gateway`` exactly as the others are. Judged:
governed CPU per request at most :data:`RATIO_LIMIT` times the plain gateway's, at every level
measured (issue #12). The Redis figure is reported, not judged: a shared store costs a round
trip per step, and the redis-server's own CPU is reported beside it.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp

from pilothouse.bench.mock_upstream import MODEL
from pilothouse.bench.overhead.results import LevelResult
from pilothouse.bench.overhead.verdicts import Verdict
from pilothouse.bench.processes import BenchError

GOVERNED = "governed"
GOVERNED_REDIS = "governed-redis"
REDIS = "redis"
"""The meter of the redis-server's CPU (while governed-redis is measured, its cost too)."""
RATIO_LIMIT = 1.25
_FAR = 10**12
"""A limit or budget no run comes near: every step runs, nothing is refused."""
PRICE = {"prompt_per_million": 0.15, "completion_per_million": 0.6}


def create_tenant(state_dir: Path) -> str:
    """An organisation, a team and a key in the store under ``state_dir``; the key's plaintext."""
    from pilothouse.governance.limits import Limit
    from pilothouse.governance.records import Quota
    from pilothouse.governance.store import DB_FILE, SqlStore

    state_dir.mkdir(parents=True, exist_ok=True)
    store = SqlStore(f"sqlite:///{state_dir / DB_FILE}")
    try:
        store.migrate()
        store.create_org("bench", Quota(budget_cost=float(_FAR)))
        store.create_team("bench", "load", Quota(budget_tokens=float(_FAR)))
        key_quota = Quota(Limit(requests_per_min=_FAR, tokens_per_min=_FAR, concurrent=_FAR))
        plaintext, _ = store.create_key("load", "bench", quota=key_quota)
    finally:
        store.close()
    return plaintext


def ledger_requests(state_dir: Path) -> int:
    """Requests the store's ledger holds (read after the gateway stopped and flushed)."""
    from pilothouse.governance.store import DB_FILE, SqlStore

    store = SqlStore(f"sqlite:///{state_dir / DB_FILE}")
    try:
        return sum(row.requests for row in store.usage([]))
    finally:
        store.close()


async def check_governed(url: str, body: bytes) -> None:
    """The governed gateway refuses a request without the key (401): governance is on, so
    what is measured is its cost, not a gateway that silently runs without it."""
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{url}/v1/chat/completions", data=body) as resp,
    ):
        status = resp.status
    if status != 401:
        raise BenchError(f"the governed gateway at {url} answered {status} without a key, not 401")


def governance_block(state_dir: Path, redis_url: str | None = None) -> dict[str, object]:
    """The fleet's ``gateway.governance``: the store and ledger in ``state_dir``, a price."""
    block: dict[str, object] = {"state_dir": str(state_dir), "prices": {MODEL: PRICE}}
    if redis_url is not None:
        block["redis"] = redis_url
    return block


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _pong(port: int) -> bool:
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return False
    try:
        writer.write(b"PING\r\n")
        return (await asyncio.wait_for(reader.readline(), 1.0)).startswith(b"+PONG")
    except (OSError, TimeoutError):
        return False
    finally:
        writer.close()


def _redis_binary() -> str:
    binary = shutil.which("redis-server") or "/usr/bin/redis-server"
    if not Path(binary).is_file():
        raise BenchError("--redis needs redis-server (apt-get install redis-server)")
    return binary


@contextlib.asynccontextmanager
async def redis_server(log_dir: Path, timeout_s: float) -> AsyncIterator[tuple[str, int]]:
    """A throwaway ``redis-server`` on loopback (no persistence); yields its URL and pid.

    Its own launcher, not ``pilothouse.testing``'s: the layers keep bench and testing apart.
    """
    port = _free_port()
    argv = [_redis_binary(), "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
    argv += ["--appendonly", "no", "--dir", str(log_dir), "--logfile", str(log_dir / "redis.log")]
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + timeout_s
        while not await _pong(port):
            if proc.returncode is not None or time.monotonic() > deadline:
                raise BenchError(f"redis-server did not start on 127.0.0.1:{port}")
            await asyncio.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0", proc.pid
    finally:
        if proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 10.0)
            except TimeoutError:
                proc.kill()
                await proc.wait()


def _ratio_verdict(stream: bool, levels: list[LevelResult]) -> Verdict:
    worst = max(levels, key=lambda lv: lv.governed_ratio)
    mode = "streamed " if stream else ""
    return Verdict(
        f"governed/gateway CPU per {mode}request",
        worst.governed_ratio,
        RATIO_LIMIT,
        "x",
        worst.governed_ratio <= RATIO_LIMIT,
        f"worst level c={worst.concurrency}: governed {worst.governed_cpu_ms:.3f} ms, "
        f"gateway {worst.gateway_cpu_ms:.3f} ms",
    )


def judge_governance(levels: list[LevelResult]) -> list[Verdict]:
    """Governed CPU per request against the plain gateway's, per mode on its worst level,
    and every governed request served; empty when governance was not measured."""
    measured = [lv for lv in levels if lv.governed is not None]
    if not measured:
        return []
    verdicts = [
        _ratio_verdict(stream, chosen)
        for stream in (False, True)
        if (chosen := [lv for lv in measured if lv.stream is stream])
    ]
    failed = sum(
        t.errors for lv in measured for t in (lv.governed, lv.governed_redis) if t is not None
    )
    verdicts.append(
        Verdict(
            "failed governed requests",
            failed,
            0,
            "requests",
            failed == 0,
            "every governed request must be served (a refusal would skip the work measured)",
        )
    )
    return verdicts


def redis_lines(levels: list[LevelResult]) -> list[str]:
    """The Redis-backed figures, one line per mode (reported, not judged)."""
    lines = []
    for stream in (False, True):
        chosen = [lv for lv in levels if lv.stream is stream and lv.governed_redis is not None]
        if not chosen:
            continue
        worst = max(chosen, key=lambda lv: lv.governed_redis_ratio)
        mode = "streamed " if stream else ""
        lines.append(
            f"governed-redis/gateway CPU per {mode}request: {worst.governed_redis_ratio:.3f}x "
            f"(worst level c={worst.concurrency}: governed-redis "
            f"{worst.governed_redis_cpu_ms:.3f} ms + redis-server {worst.redis_cpu_ms:.3f} ms, "
            f"gateway {worst.gateway_cpu_ms:.3f} ms; reported, not judged)"
        )
    return lines
