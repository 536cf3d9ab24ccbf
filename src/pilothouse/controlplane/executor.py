"""The executor behind ``pilothouse up``: replicas kept in line with the spec.

Where a replica runs is the :class:`~pilothouse.controlplane.replicas.ReplicaRuntime`'s
business: child processes here (:class:`~pilothouse.controlplane.replicas.LocalRuntime`, the
default) or Ray actors on a cluster (:class:`~pilothouse.controlplane.ray_runtime.RayRuntime`,
``pilothouse up --executor ray``); everything below is the same for both.

Every ``local.reconcile_interval_s`` (or at once when a held request signals demand) it:

1. **observes** its replicas: a process that exited unasked is *crashed*; a *starting* one
   is health-probed and becomes *ready* (and routable) when it answers; a *ready* one is
   probed every ``local.liveness_interval_s`` and, after ``local.liveness_failures`` failed
   probes in a row (hung: alive but not answering), is *crashed* too, leaves routing and is
   restarted like any crash; a replica ready for ``local.restart_reset_s`` forgets its
   earlier crashes;
2. **autoscales** each model with an ``autoscaling`` block: a sample from the gateway
   (:class:`~pilothouse.controlplane.signals.GatewaySignals`) every ``interval_s`` into
   :func:`~pilothouse.autoscale.autoscale`, whose target it keeps
   (:class:`~pilothouse.controlplane.scaler.ReplicaTargets`);
3. **reconciles** (:func:`~pilothouse.controlplane.reconcile.reconcile`) and carries out
   the actions: start (added to the pool not ready), restart (after the backoff the
   reconcile waited out), stop — draining first: the replica leaves routing
   (``pool.set_draining``) and is stopped once its in-flight count is 0 or after
   ``local.drain_timeout_s``.

:meth:`LocalExecutor.apply` swaps the desired spec (file watch or ``pilothouse apply``);
the next tick rolls it out.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from pilothouse.clock import Clock, SystemClock
from pilothouse.config.fleet import FleetSpec, ModelSpec
from pilothouse.controlplane.changes import ApplyReport, describe_change
from pilothouse.controlplane.reconcile import (
    Action,
    ObservedFleet,
    ObservedReplica,
    Phase,
    RestartReplica,
    StartReplica,
    StopReplica,
    generation,
    reconcile,
)
from pilothouse.controlplane.replicas import LocalRuntime, ReplicaHandle, ReplicaRuntime, probe
from pilothouse.controlplane.scaler import ReplicaTargets
from pilothouse.controlplane.signals import GatewaySignals
from pilothouse.endpoints.pool import EndpointPool
from pilothouse.errors import EngineError

log = logging.getLogger("pilothouse.executor")
_DRAIN_POLL_S = 0.05


@dataclass(slots=True)
class _Replica:
    model: str
    process: ReplicaHandle | None
    generation: str
    phase: Phase
    since: float
    restarts: int = 0
    failed_probes: int = 0
    probed: float = 0.0


class LocalExecutor:
    """Supervises the launched replicas of one fleet; see the module docstring.

    ``runtime`` starts the replicas (default: child processes on ``host``); the executor
    owns it and closes it in :meth:`stop`.
    """

    def __init__(
        self,
        spec: FleetSpec,
        pool: EndpointPool,
        log_dir: Path,
        *,
        signals: GatewaySignals | None = None,
        clock: Clock | None = None,
        host: str = "127.0.0.1",
        runtime: ReplicaRuntime | None = None,
    ) -> None:
        self._spec = spec
        self._pool = pool
        self.log_dir = log_dir
        self._clock = clock or SystemClock()
        self._runtime = runtime or LocalRuntime(log_dir, host)
        self._replicas: dict[str, _Replica] = {}
        self._targets = ReplicaTargets(signals)
        self._wake = asyncio.Event()
        self._stops: set[asyncio.Task[None]] = set()
        self._listeners: list[Callable[[FleetSpec], None]] = []
        self._session: aiohttp.ClientSession | None = None

    # -- what others call ----------------------------------------------------------------

    @property
    def spec(self) -> FleetSpec:
        return self._spec

    def on_apply(self, listener: Callable[[FleetSpec], None]) -> None:
        """Call ``listener(spec)`` whenever a new spec is applied."""
        self._listeners.append(listener)

    def demand(self, model: str) -> None:
        """A request for ``model`` is held: decide (and start a replica) now."""
        self._targets.demand(model)
        self._wake.set()

    def apply(self, spec: FleetSpec) -> ApplyReport:
        """Make ``spec`` the desired state; returns what will change."""
        old, self._spec = self._spec, spec
        for model in spec.models:
            before = old.model(model.name)
            if before is None or before.autoscaling != model.autoscaling:
                self._retarget(model)
        report = describe_change(old, spec, reconcile(spec, self._observed()))
        for listener in self._listeners:
            listener(spec)
        self._wake.set()
        return report

    def _retarget(self, model: ModelSpec) -> None:
        live = sum(r.model == model.name and r.phase != "draining" for r in self._replicas.values())
        self._targets.retarget(model, live)

    def status(self) -> dict[str, object]:
        """Replicas and targets, for ``GET /admin/fleet``."""
        replicas = [
            {
                "name": name,
                "model": r.model,
                "phase": r.phase,
                "address": r.process.endpoint.address if r.process else None,
                "pid": r.process.pid if r.process else None,
                "restarts": r.restarts,
                "in_flight": self._pool.in_flight(name),
            }
            for name, r in sorted(self._replicas.items())
        ]
        return {
            "targets": dict(sorted(self._targets.targets.items())),
            "replicas": replicas,
            "scaling": list(self._targets.recent),
        }

    async def start(
        self, timeout_s: float, on_ready: Callable[[str, str], None] | None = None
    ) -> None:
        """Start the spec's initial replicas and wait until each is healthy (fail fast)."""
        self._session = aiohttp.ClientSession()
        await self._act(reconcile(self._spec, self._observed()))
        deadline = self._clock.now() + timeout_s
        while any(r.phase == "starting" for r in self._replicas.values()):
            for name, replica in self._replicas.items():
                if replica.process is None or replica.process.exited:
                    raise EngineError(self._exit_message(name, replica))
            for name in await self._probe_starting():
                if on_ready is not None:
                    on_ready(name, self._pool.get(name).address)
            if self._clock.now() > deadline:
                names = [n for n, r in self._replicas.items() if r.phase == "starting"]
                raise EngineError(f"replicas {names} were not ready after {timeout_s:.0f}s")
            await asyncio.sleep(0.1)

    async def run(self) -> None:
        """Observe, autoscale, reconcile and act until cancelled."""
        while True:
            self._wake.clear()  # before the pass: demand arriving during it runs another
            try:
                await self.tick()
            except (EngineError, OSError, aiohttp.ClientError):
                log.exception("a reconcile pass failed; trying again")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._spec.local.reconcile_interval_s)

    async def tick(self) -> None:
        await self._observe()
        self._targets.decide(self._spec, self._clock.now())
        await self._act(reconcile(self._spec, self._observed()))

    async def stop(self) -> None:
        """Stop every replica at once (no draining: the gateway has stopped already)."""
        for task in self._stops:
            task.cancel()
        await asyncio.gather(*self._stops, return_exceptions=True)
        grace_s = self._spec.local.stop_grace_s
        handles = [r.process for r in self._replicas.values() if r.process is not None]
        await asyncio.gather(*(handle.stop(grace_s) for handle in handles))
        for name in list(self._replicas):
            self._forget(name)
        await self._runtime.close()
        if self._session is not None:
            await self._session.close()
            self._session = None

    # -- observe -------------------------------------------------------------------------

    def _observed(self) -> ObservedFleet:
        replicas = tuple(
            ObservedReplica(name, r.model, r.generation, r.phase, r.since, r.restarts)
            for name, r in self._replicas.items()
        )
        return ObservedFleet(self._clock.now(), replicas, dict(self._targets.targets))

    async def _observe(self) -> None:
        now = self._clock.now()
        for name, replica in self._replicas.items():
            process = replica.process
            if replica.phase in ("starting", "ready") and (process is None or process.exited):
                log.warning(self._exit_message(name, replica))
                replica.phase, replica.since = "crashed", now
                self._pool.set_ready(name, False)
            elif (
                replica.phase == "ready" and now - replica.since >= self._spec.local.restart_reset_s
            ):
                replica.restarts = 0
        for name in await self._probe_starting():
            log.info("replica %s is ready on %s", name, self._pool.get(name).address)
        await self._probe_ready()

    async def _probe_starting(self) -> list[str]:
        """Probe the starting replicas; the healthy ones become ready (and routable)."""
        session = self._session
        assert session is not None, "start() first"
        starting = [
            (name, r, r.process)
            for name, r in self._replicas.items()
            if r.phase == "starting" and r.process is not None
        ]
        timeout_s = self._spec.local.probe_timeout_s
        healthy = await asyncio.gather(
            *(probe(session, process, timeout_s) for _, _, process in starting)
        )
        ready = []
        for (name, replica, _), ok in zip(starting, healthy, strict=True):
            if ok and replica.phase == "starting":
                replica.phase, replica.since = "ready", self._clock.now()
                self._pool.set_ready(name, True)
                ready.append(name)
        return ready

    async def _probe_ready(self) -> None:
        """Probe the ready replicas that are due; one that keeps failing is hung: crashed."""
        assert self._session is not None, "start() first"
        local, now = self._spec.local, self._clock.now()
        due = [
            (name, r, r.process)
            for name, r in self._replicas.items()
            if r.phase == "ready" and r.process is not None
            and now - r.probed >= local.liveness_interval_s
        ]  # fmt: skip
        results = await asyncio.gather(
            *(probe(self._session, process, local.probe_timeout_s) for _, _, process in due)
        )
        for (name, replica, _), ok in zip(due, results, strict=True):
            replica.probed = now
            replica.failed_probes = 0 if ok else replica.failed_probes + 1
            if replica.phase == "ready" and replica.failed_probes >= local.liveness_failures:
                log.warning(
                    "replica %s failed %d health probes in a row (hung?); restarting it",
                    name, replica.failed_probes,
                )  # fmt: skip
                replica.phase, replica.since = "crashed", self._clock.now()
                self._pool.set_ready(name, False)

    # -- act -----------------------------------------------------------------------------

    async def _act(self, actions: list[Action]) -> None:
        for action in actions:
            if isinstance(action, StartReplica):
                await self._start(action.model, action.name, restarts=0)
            elif isinstance(action, RestartReplica):
                log.info("restarting %s: %s", action.name, action.reason)
                old = self._replicas[action.name]
                if old.process is not None:
                    await old.process.stop(self._spec.local.stop_grace_s)
                if self._pool.has_endpoint(action.name):
                    self._pool.remove(action.name)
                await self._start(old.model, action.name, restarts=old.restarts + 1)
            elif isinstance(action, StopReplica):
                self._begin_stop(action)

    async def _start(self, model_name: str, name: str, restarts: int) -> None:
        model = self._spec.model(model_name)
        assert model is not None, f"reconcile started an undeclared model {model_name}"
        now = self._clock.now()
        try:
            process = await self._runtime.spawn(model, name)
        except EngineError as exc:
            log.warning("%s", exc)
            self._replicas[name] = _Replica(model_name, None, generation(model), "crashed", now,
                                            restarts + 1)  # fmt: skip
            return
        self._replicas[name] = _Replica(model_name, process, generation(model), "starting", now,
                                        restarts)  # fmt: skip
        self._pool.add(process.endpoint, ready=False)

    def _begin_stop(self, action: StopReplica) -> None:
        replica = self._replicas[action.name]
        replica.phase, replica.since = "draining", self._clock.now()
        log.info("stopping %s (%s)", action.name, action.reason or "requested")
        task = asyncio.get_running_loop().create_task(self._drain_and_stop(action))
        self._stops.add(task)
        task.add_done_callback(self._stops.discard)

    async def _drain_and_stop(self, action: StopReplica) -> None:
        name, local = action.name, self._spec.local
        if action.drain and self._pool.has_endpoint(name):
            self._pool.set_draining(name)
            deadline = self._clock.now() + local.drain_timeout_s
            while self._pool.in_flight(name) > 0 and self._clock.now() < deadline:  # noqa: ASYNC110 - the pool has no event
                await asyncio.sleep(_DRAIN_POLL_S)
        process = self._replicas[name].process
        if self._pool.has_endpoint(name):
            self._pool.remove(name)  # out of routing and probing before it goes away
        if process is not None:
            await process.stop(local.stop_grace_s)
        self._forget(name)

    def _forget(self, name: str) -> None:
        self._replicas.pop(name, None)
        if self._pool.has_endpoint(name):
            self._pool.remove(name)

    def _exit_message(self, name: str, replica: _Replica) -> str:
        if replica.process is None:
            return f"replica {name} could not be started"
        return replica.process.describe_exit()
