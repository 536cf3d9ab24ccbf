"""One engine replica as a child process on a loopback port: spawn, probe, terminate.

The executor sees replicas through two small protocols: a :class:`ReplicaRuntime` spawns a
replica of a model and answers a :class:`ReplicaHandle` (its endpoint, pid, whether it has
exited, how to stop it). :class:`LocalRuntime` runs child processes here;
:class:`~pilothouse.controlplane.ray_runtime.RayRuntime` runs them in Ray actors.

Every child gets ``PR_SET_PDEATHSIG`` (SIGTERM) on Linux, so even a SIGKILLed parent leaves
no orphan engines; a normal stop sends SIGTERM, waits, then SIGKILLs stragglers. The
replica's stdout and stderr go to ``<log_dir>/<name>.log`` (appended across restarts).
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
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import aiohttp

from pilothouse.config.fleet import ModelSpec
from pilothouse.engines.launch import replica_command
from pilothouse.engines.registry import engine_kind
from pilothouse.errors import EngineError
from pilothouse.scheduling.types import Endpoint


class ReplicaHandle(Protocol):
    """One running replica as the executor sees it, wherever it runs."""

    @property
    def endpoint(self) -> Endpoint: ...

    @property
    def pid(self) -> int | None:
        """The engine's process id (on the node that runs it), if known."""
        ...

    @property
    def exited(self) -> bool:
        """True once the replica is gone without being stopped (or after :meth:`stop`)."""
        ...

    def describe_exit(self) -> str: ...

    async def stop(self, grace_s: float) -> None:
        """SIGTERM, wait up to ``grace_s``, then SIGKILL; returns once it is gone."""
        ...


class ReplicaRuntime(Protocol):
    """Where replicas run: starts one replica of a model under a name."""

    async def spawn(self, model: ModelSpec, name: str) -> ReplicaHandle:
        """Start it and answer its handle (not yet healthy); EngineError if it cannot."""
        ...

    async def close(self) -> None:
        """Release what the runtime holds; called once, after every replica is stopped."""
        ...


@dataclass(slots=True)
class ReplicaProcess:
    endpoint: Endpoint
    process: asyncio.subprocess.Process
    log_path: Path

    @property
    def name(self) -> str:
        return self.endpoint.name

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def exited(self) -> bool:
        return self.process.returncode is not None

    def describe_exit(self) -> str:
        return (
            f"replica {self.name} exited with code {self.process.returncode}; see {self.log_path}"
        )

    async def stop(self, grace_s: float) -> None:
        await terminate([self], grace_s)


class LocalRuntime:
    """Replicas as child processes of this one, on free ports of ``host``."""

    def __init__(self, log_dir: Path, host: str = "127.0.0.1") -> None:
        self.log_dir = log_dir
        self.host = host

    async def spawn(self, model: ModelSpec, name: str) -> ReplicaProcess:
        return await spawn_replica(model, name, self.log_dir, self.host)

    async def close(self) -> None:
        return None


def free_port(host: str = "127.0.0.1") -> int:
    """A port the OS says is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def die_with_parent() -> None:  # runs in the child between fork and exec
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _replica_child_setup() -> None:  # runs in the child between fork and exec
    # A process group of its own: a terminal's Ctrl-C reaches pilothouse only, which drains
    # the gateway first and then stops the engines itself (uvloop has no process_group=).
    os.setpgid(0, 0)
    die_with_parent()


async def spawn_replica(
    model: ModelSpec, name: str, log_dir: Path, host: str = "127.0.0.1"
) -> ReplicaProcess:
    """Start one replica of ``model`` named ``name`` on a free port of ``host``."""
    log_dir.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240 - one small local call
    port = free_port(host)
    log_path = log_dir / f"{name}.log"
    with log_path.open("ab") as log:
        log.write(f"--- {time.strftime('%H:%M:%S')} starting {name} on port {port}\n".encode())
        log.flush()
        try:
            process = await asyncio.create_subprocess_exec(
                *replica_command(model, host, port),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                preexec_fn=_replica_child_setup,
            )
        except OSError as exc:
            raise EngineError(f"cannot start replica {name}: {exc}") from exc
    endpoint = Endpoint(name=name, address=f"{host}:{port}", model=model.name, engine=model.engine)
    return ReplicaProcess(endpoint, process, log_path)


async def probe(
    session: aiohttp.ClientSession, replica: ReplicaHandle, timeout_s: float = 2.0
) -> bool:
    """True when the replica answers its engine's health path with 200 within ``timeout_s``."""
    endpoint = replica.endpoint
    url = f"http://{endpoint.address}{engine_kind(endpoint.engine).health_path}"
    with contextlib.suppress(aiohttp.ClientError, TimeoutError):
        async with session.get(url, timeout=aiohttp.ClientTimeout(total=timeout_s)) as resp:
            await resp.read()
            return resp.status == 200
    return False


async def terminate(replicas: Iterable[ReplicaProcess], grace_s: float = 10.0) -> None:
    """SIGTERM the running ones, wait up to ``grace_s``, then SIGKILL what is left."""
    running = [r.process for r in replicas if not r.exited]
    for process in running:
        with contextlib.suppress(ProcessLookupError):
            process.terminate()
            process.send_signal(signal.SIGCONT)  # a stopped (hung) one handles SIGTERM too
    try:
        await asyncio.wait_for(asyncio.gather(*(p.wait() for p in running)), grace_s)
    except TimeoutError:
        for process in running:
            if process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
        await asyncio.gather(*(p.wait() for p in running))
