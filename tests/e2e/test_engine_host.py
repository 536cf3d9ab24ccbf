"""The Ray replica actor's body, run here without Ray: one real ``sim`` engine.

``EngineHost`` is what each Ray actor runs (``docs/ray.md``); as a plain class it can be
driven directly: start answers the engine's address, ``wait`` returns when it exits, ``stop``
ends it.
"""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import aiohttp
import pytest

from pilothouse.config.fleet import ModelSpec
from pilothouse.controlplane.ray_actor import EngineHost

pytestmark = pytest.mark.e2e
MODEL = ModelSpec(name="m", engine="sim", args={"time-scale": 10})


async def healthy(address: str, timeout_s: float = 30.0) -> None:
    async with aiohttp.ClientSession() as session:
        for _ in range(int(timeout_s / 0.1)):
            try:
                async with session.get(f"http://{address}/health") as reply:
                    if reply.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    raise AssertionError(f"the engine on {address} did not become healthy in {timeout_s:.0f}s")


async def test_start_wait_and_stop(tmp_path: Path) -> None:
    host = EngineHost()
    started = await host.start(MODEL, "m-0", str(tmp_path), host="127.0.0.1")
    assert started.node == "127.0.0.1"
    assert started.address.startswith("127.0.0.1:")
    assert started.log_path == str(tmp_path / "m-0.log")
    await healthy(started.address)
    waiting = asyncio.ensure_future(host.wait())
    await asyncio.sleep(0.2)
    assert not waiting.done()
    code = await host.stop(grace_s=5)
    assert await asyncio.wait_for(waiting, 10) == code
    assert code in (0, -signal.SIGTERM)
    with pytest.raises(RuntimeError, match="already started"):
        await host.start(MODEL, "m-0", str(tmp_path), host="127.0.0.1")


async def test_wait_reports_a_killed_engine(tmp_path: Path) -> None:
    host = EngineHost()
    started = await host.start(MODEL, "m-1", str(tmp_path), host="127.0.0.1")
    os.kill(started.pid, signal.SIGKILL)
    assert await asyncio.wait_for(host.wait(), 10) == -signal.SIGKILL
    assert await host.stop(grace_s=1) == -signal.SIGKILL  # stopping an exited one is fine
