"""Local processes: a fixed set of replicas (:class:`LocalFleet`), the building block of
``bench live --launch-sim``; ``pilothouse up`` runs the supervising
:class:`~pilothouse.controlplane.executor.LocalExecutor` on the same primitives
(:mod:`pilothouse.controlplane.replicas`).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from pathlib import Path

import aiohttp

from pilothouse.config.fleet import FleetSpec
from pilothouse.controlplane.replicas import (
    ReplicaProcess,
    die_with_parent,
    free_port,
    probe,
    spawn_replica,
    terminate,
)
from pilothouse.errors import EngineError
from pilothouse.scheduling.types import Endpoint

__all__ = ["LocalFleet", "default_log_dir", "die_with_parent", "free_port"]


class LocalFleet:
    """Starts, health-checks and stops the launched replicas of a fleet, once."""

    def __init__(self, spec: FleetSpec, log_dir: Path, host: str = "127.0.0.1") -> None:
        self.spec = spec
        self.log_dir = log_dir
        self.host = host
        self.replicas: list[ReplicaProcess] = []

    async def start(self) -> list[Endpoint]:
        for model in self.spec.models:
            if model.launched:
                for index in range(model.initial_replicas):
                    name = f"{model.name}-{index}"
                    self.replicas.append(await spawn_replica(model, name, self.log_dir, self.host))
        return [r.endpoint for r in self.replicas]

    async def wait_ready(
        self, timeout_s: float, on_ready: Callable[[Endpoint], None] | None = None
    ) -> None:
        """Wait until every replica answers its health probe; fail fast if one exits."""
        async with aiohttp.ClientSession() as session:
            await asyncio.gather(
                *(wait_healthy(session, r, timeout_s, on_ready) for r in self.replicas)
            )

    async def stop(self, grace_s: float = 10.0) -> None:
        """SIGTERM every replica, wait up to ``grace_s``, then SIGKILL what is left."""
        await terminate(self.replicas, grace_s)

    def pids(self) -> list[int]:
        return [r.process.pid for r in self.replicas]


async def wait_healthy(
    session: aiohttp.ClientSession,
    replica: ReplicaProcess,
    timeout_s: float,
    on_ready: Callable[[Endpoint], None] | None = None,
) -> None:
    """Return once ``replica`` is healthy; EngineError if it exits or the time runs out."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if replica.exited:
            raise EngineError(replica.describe_exit())
        if await probe(session, replica):
            if on_ready is not None:
                on_ready(replica.endpoint)
            return
        await asyncio.sleep(0.2)
    raise EngineError(
        f"replica {replica.name} was not ready after {timeout_s:.0f}s; see {replica.log_path}"
    )


def default_log_dir() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "pilothouse" / "logs" / time.strftime("%Y%m%d-%H%M%S")
