"""What runs inside each replica's Ray actor: one engine process on the actor's node.

:class:`EngineHost` is a plain class (Ray is not imported here): the Ray runtime wraps it
with ``ray.remote`` and Ray runs it as an *async actor*, so ``wait`` and ``stop`` can be in
flight together. The engine is started exactly as the local executor starts it
(:func:`~pilothouse.controlplane.replicas.spawn_replica`: same command line, free port, log
file, ``PR_SET_PDEATHSIG``), bound to the node's IP address, so the gateway reaches it there.
If the actor's worker process dies, the engine gets SIGTERM from the kernel.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pilothouse.config.fleet import ModelSpec
from pilothouse.controlplane.replicas import ReplicaProcess, spawn_replica, terminate


@dataclass(frozen=True, slots=True)
class StartedEngine:
    """What the actor reports once its engine process runs."""

    address: str
    """``node_ip:port`` the engine listens on."""
    pid: int
    """The engine's process id on its node."""
    log_path: str
    """The engine's log file on its node."""
    node: str
    """The node's IP address."""


class EngineHost:
    """One engine process, started by :meth:`start` and watched until it exits."""

    def __init__(self) -> None:
        self._replica: ReplicaProcess | None = None

    async def start(
        self, model: ModelSpec, name: str, log_dir: str, host: str | None = None
    ) -> StartedEngine:
        """Start the engine on a free port of ``host`` (default: this Ray node's IP)."""
        if self._replica is not None:
            raise RuntimeError(f"replica {name} is already started")
        node = host or _node_ip()
        self._replica = await spawn_replica(model, name, Path(log_dir), node)
        return StartedEngine(
            self._replica.endpoint.address,
            self._replica.pid,
            str(self._replica.log_path),
            node,
        )

    async def wait(self) -> int:
        """Return the engine's exit code once it exits (for whatever reason)."""
        return await self._started().process.wait()

    async def stop(self, grace_s: float) -> int | None:
        """SIGTERM the engine, SIGKILL it after ``grace_s``; answer its exit code."""
        replica = self._started()
        await terminate([replica], grace_s)
        return replica.process.returncode

    def _started(self) -> ReplicaProcess:
        if self._replica is None:
            raise RuntimeError("start() first")
        return self._replica


def _node_ip() -> str:
    """In a Ray worker: this node's address as the cluster knows it."""
    ray_util: Any = importlib.import_module("ray.util")
    return str(ray_util.get_node_ip_address())
