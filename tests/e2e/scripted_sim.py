"""A gateway in front of a simulator process that answers from a script (tool calls).

The simulator's ``--script FILE`` makes its chat completions follow scripted replies, tool
calls included.
"""

from __future__ import annotations

import asyncio
import contextlib
import selectors
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import yaml

from pilothouse.config.fleet import FleetSpec
from pilothouse.endpoints.pool import EndpointPool
from pilothouse.scheduling.types import Endpoint
from pilothouse.servers.sim.runner import READY_PREFIX
from tests.e2e.sim_gateway import front_gateway

#: Asks for the weather, then answers from the tool's result.
WEATHER_SCRIPT: dict[str, Any] = {
    "replies": [
        {
            "when": {"last_role": "user", "contains": "weather"},
            "tool_calls": [{"name": "get_weather", "arguments": {"city": "Paris"}}],
        },
        {"when": {"last_role": "tool"}, "content": "It is sunny in Paris."},
    ]
}


def _start(args: list[str], log: Path) -> tuple[subprocess.Popen[str], str]:
    with log.open("w") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "pilothouse.servers.sim", *args],
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
        )
    assert proc.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(proc.stdout, selectors.EVENT_READ)
        if selector.select(timeout=60):
            line = proc.stdout.readline()
            if line.startswith(READY_PREFIX):
                return proc, line.removeprefix(READY_PREFIX).strip()
    proc.kill()
    proc.wait()
    raise AssertionError(f"the simulator did not start; log:\n{log.read_text()[-3000:]}")


@contextlib.asynccontextmanager
async def scripted_gateway(
    fleet: FleetSpec, model: str, tmp_path: Path, script: dict[str, Any]
) -> AsyncIterator[str]:
    """A simulator process serving ``model`` from ``script``, and a gateway in front of it
    (``fleet`` gives the gateway's settings); yields the gateway's URL."""
    path = tmp_path / "script.yaml"
    path.write_text(yaml.safe_dump(script))
    args = ["--port", "0", "--model", model, "--time-scale", "50", "--script", str(path)]
    proc, url = await asyncio.to_thread(_start, args, tmp_path / "sim.log")
    try:
        pool = EndpointPool()
        address = url.removeprefix("http://").rstrip("/")
        pool.add(Endpoint(name="scripted", address=address, model=model, engine="sim"))
        async with front_gateway(fleet, pool) as (gateway_url, _app):
            yield gateway_url
    finally:
        proc.terminate()
        try:
            await asyncio.to_thread(proc.wait, 10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
