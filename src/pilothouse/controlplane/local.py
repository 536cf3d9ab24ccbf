"""The local executor: engine replicas as child processes on loopback ports.

Every child gets ``PR_SET_PDEATHSIG`` (SIGTERM) on Linux, so even a SIGKILLed parent leaves
no orphan engines; a normal stop sends SIGTERM, waits, then SIGKILLs stragglers.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from pilothouse.config.fleet import FleetSpec, ModelSpec
from pilothouse.engines.adapters import adapter_for
from pilothouse.engines.launch import replica_command
from pilothouse.errors import EngineError
from pilothouse.scheduling.types import Endpoint


@dataclass(slots=True)
class Replica:
    endpoint: Endpoint
    process: asyncio.subprocess.Process
    log_path: Path


def free_port(host: str = "127.0.0.1") -> int:
    """A port the OS says is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def die_with_parent() -> None:  # runs in the child between fork and exec
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class LocalFleet:
    """Starts, health-checks and stops the launched replicas of a fleet."""

    def __init__(self, spec: FleetSpec, log_dir: Path, host: str = "127.0.0.1") -> None:
        self.spec = spec
        self.log_dir = log_dir
        self.host = host
        self.replicas: list[Replica] = []

    async def start(self) -> list[Endpoint]:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        for model in self.spec.models:
            if model.launched:
                for index in range(model.replicas):
                    self.replicas.append(await self._spawn(model, index))
        return [r.endpoint for r in self.replicas]

    async def _spawn(self, model: ModelSpec, index: int) -> Replica:
        port = free_port(self.host)
        name = f"{model.name}-{index}"
        log_path = self.log_dir / f"{name}.log"
        log = log_path.open("ab")
        try:
            process = await asyncio.create_subprocess_exec(
                *replica_command(model, self.host, port),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                preexec_fn=die_with_parent,
            )
        except OSError as exc:
            raise EngineError(f"cannot start replica {name}: {exc}") from exc
        finally:
            log.close()
        endpoint = Endpoint(
            name=name, address=f"{self.host}:{port}", model=model.name, engine=model.engine
        )
        return Replica(endpoint, process, log_path)

    async def wait_ready(
        self, timeout_s: float, on_ready: Callable[[Endpoint], None] | None = None
    ) -> None:
        """Wait until every replica answers its health probe; fail fast if one exits."""
        async with aiohttp.ClientSession() as session:
            await asyncio.gather(
                *(self._wait_one(session, r, timeout_s, on_ready) for r in self.replicas)
            )

    async def _wait_one(
        self,
        session: aiohttp.ClientSession,
        replica: Replica,
        timeout_s: float,
        on_ready: Callable[[Endpoint], None] | None,
    ) -> None:
        url = f"http://{replica.endpoint.address}{adapter_for(replica.endpoint.engine).health_path}"
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if replica.process.returncode is not None:
                raise EngineError(
                    f"replica {replica.endpoint.name} exited with code "
                    f"{replica.process.returncode}; see {replica.log_path}"
                )
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                async with session.get(url, timeout=aiohttp.ClientTimeout(total=2)) as resp:
                    if resp.status == 200:
                        if on_ready is not None:
                            on_ready(replica.endpoint)
                        return
            await asyncio.sleep(0.2)
        raise EngineError(
            f"replica {replica.endpoint.name} was not ready after {timeout_s:.0f}s; "
            f"see {replica.log_path}"
        )

    async def stop(self, grace_s: float = 10.0) -> None:
        """SIGTERM every replica, wait up to ``grace_s``, then SIGKILL what is left."""
        running = [r.process for r in self.replicas if r.process.returncode is None]
        for process in running:
            with contextlib.suppress(ProcessLookupError):
                process.terminate()
        try:
            await asyncio.wait_for(asyncio.gather(*(p.wait() for p in running)), grace_s)
        except TimeoutError:
            for process in running:
                if process.returncode is None:
                    with contextlib.suppress(ProcessLookupError):
                        process.kill()
            await asyncio.gather(*(p.wait() for p in running))

    def pids(self) -> list[int]:
        return [r.process.pid for r in self.replicas]


def default_log_dir() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "pilothouse" / "logs" / time.strftime("%Y%m%d-%H%M%S")
