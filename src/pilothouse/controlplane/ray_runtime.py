"""The Ray runtime: each replica is a Ray actor that runs its engine on the actor's node.

``pilothouse up --executor ray`` keeps the executor (reconcile, autoscaling, draining,
restarts) and hands it a :class:`RayRuntime` instead of the local one. Per replica it
creates one async actor (:class:`~pilothouse.controlplane.ray_actor.EngineHost`) with the
model's resources (:func:`actor_options`) and no Ray-level restarts; Ray places it; the actor
starts the engine on a free port of its node and reports ``node_ip:port``, which joins the
gateway's pool like a local replica (health probe included). A call to the actor's ``wait``
stays pending while the engine runs: when it returns (the engine exited) or fails (the actor
or its node died), the replica counts as crashed and the executor restarts it as usual.

The actors belong to the ``pilothouse up`` process (the Ray driver): if it dies, Ray kills
them and their engines with them. See ``docs/ray.md``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import re
import socket
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import Any

from pilothouse.config.fleet import ModelSpec
from pilothouse.config.ray import RaySpec
from pilothouse.controlplane.ray_actor import EngineHost, StartedEngine
from pilothouse.engines.registry import engine_kind
from pilothouse.errors import ConfigError, EngineError
from pilothouse.scheduling.types import Endpoint

log = logging.getLogger("pilothouse.ray")
_STOP_SLACK_S = 10.0  # beyond the stop grace, for the actor call itself
_SUFFIXES = {
    "": 1.0,
    "m": 1e-3,
    "k": 1e3,
    "M": 1e6,
    "G": 1e9,
    "T": 1e12,
    "P": 1e15,
    "E": 1e18,
    "Ki": 2.0**10,
    "Mi": 2.0**20,
    "Gi": 2.0**30,
    "Ti": 2.0**40,
    "Pi": 2.0**50,
    "Ei": 2.0**60,
}
_QUANTITY = re.compile(r"^\+?([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)([a-zA-Z]*)$")


def quantity(text: str, field: str) -> float:
    """A Kubernetes quantity as a number: ``250m`` → 0.25, ``16Gi`` → 17179869184."""
    match = _QUANTITY.match(text)
    if match is None or match.group(2) not in _SUFFIXES:
        raise ConfigError(f"'{text}' is not a quantity Ray can use", path=field)
    return float(match.group(1)) * _SUFFIXES[match.group(2)]


def actor_options(model: ModelSpec) -> dict[str, float]:
    """Ray resources of one replica's actor, from the model's ``resources``.

    ``num_cpus``: ``resources.cpu``, else the engine kind's default CPU request (as
    ``render k8s``: 4 for vLLM, 1 for llama.cpp, 0.25 for sim);
    ``num_gpus``: ``resources.gpus``, else the kind's default (tensor x pipeline parallel
    size for vLLM, else 0);
    ``memory`` (bytes, a Ray scheduling resource): only when ``resources.memory`` is set.
    """
    res, kind = model.resources, engine_kind(model.engine)
    cpus = quantity(res.cpu or kind.resources.cpu, "resources.cpu")
    gpus = res.gpus if res.gpus is not None else kind.gpus(model)
    options = {"num_cpus": cpus, "num_gpus": float(gpus)}
    if res.memory:
        options["memory"] = float(int(quantity(res.memory, "resources.memory")))
    return options


class RayReplica:
    """The executor's handle on one replica running in a Ray actor."""

    def __init__(
        self,
        endpoint: Endpoint,
        started: StartedEngine,
        stop: Callable[[float], Awaitable[None]],
        done: concurrent.futures.Future[Any],
    ) -> None:
        self.endpoint = endpoint
        self.started = started
        self._stop = stop
        self._end: str | None = None
        done.add_done_callback(self._ended)  # may run on a Ray thread: one assignment

    @property
    def pid(self) -> int:
        return self.started.pid

    @property
    def exited(self) -> bool:
        return self._end is not None

    def describe_exit(self) -> str:
        where = f"see {self.started.log_path} on {self.started.node}"
        return f"replica {self.endpoint.name} {self._end or 'is running'}; {where}"

    async def stop(self, grace_s: float) -> None:
        await self._stop(grace_s)
        if self._end is None:
            self._end = "was stopped"

    def _ended(self, done: concurrent.futures.Future[Any]) -> None:
        if done.cancelled():
            self._end = "lost its Ray actor (watch cancelled)"
        elif (error := done.exception()) is not None:
            self._end = f"lost its Ray actor ({_brief(error)})"
        else:
            self._end = f"exited with code {done.result()}"


class RayRuntime:
    """Starts replicas as Ray actors; :meth:`connect` (joins the cluster) first."""

    def __init__(self, spec: RaySpec, log_dir: Path) -> None:
        self.spec = spec
        self.log_dir = log_dir
        self._ray: Any = None
        self._actor_class: Any = None

    def connect(self) -> None:
        """Join the cluster at ``spec.address`` (see :class:`~pilothouse.config.ray.RaySpec`).

        Blocking, and in the main thread: ``ray.init`` installs a SIGTERM handler there.
        """
        try:
            import ray
        except ImportError as exc:
            raise ConfigError(
                "the Ray executor needs ray: pip install 'pilothouse[ray]'", path="ray"
            ) from exc
        where = self.spec.address or "RAY_ADDRESS, or a new local instance"
        if self.spec.address not in (None, "auto"):
            _reachable(self.spec.address)  # ray.init would retry an unreachable head for minutes
        try:
            ray.init(
                address=self.spec.address,
                namespace=self.spec.namespace,
                log_to_driver=False,
                include_dashboard=False,
            )
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise EngineError(f"cannot join the Ray cluster ({where}): {exc}") from exc
        self._ray = ray
        self._actor_class = ray.remote(EngineHost)
        log.info("joined the Ray cluster (%s): %s", where, self._ray.cluster_resources())

    async def spawn(self, model: ModelSpec, name: str) -> RayReplica:
        ray = self._ray
        assert ray is not None, "connect() first"
        try:
            options = actor_options(model)
        except ConfigError as exc:
            raise EngineError(f"cannot start replica {name} on Ray: {exc}") from exc
        actor = self._actor_class.options(max_restarts=0, **options).remote()
        call = actor.start.remote(model, name, str(self.log_dir))
        try:
            started: StartedEngine = await asyncio.wait_for(
                _result(call), self.spec.start_timeout_s
            )
        except (TimeoutError, ray.exceptions.RayError) as exc:
            ray.kill(actor)
            reason = (
                f"not placed and started in {self.spec.start_timeout_s:.0f}s"
                if isinstance(exc, TimeoutError)
                else _brief(exc)
            )
            raise EngineError(f"cannot start replica {name} on Ray: {reason}") from exc
        endpoint = Endpoint(
            name=name, address=started.address, model=model.name, engine=model.engine
        )
        log.info("replica %s: Ray actor on %s, engine pid %d", name, started.node, started.pid)
        return RayReplica(
            endpoint, started, partial(self._stop, actor), actor.wait.remote().future()
        )

    async def _stop(self, actor: Any, grace_s: float) -> None:
        ray = self._ray
        try:
            await asyncio.wait_for(_result(actor.stop.remote(grace_s)), grace_s + _STOP_SLACK_S)
        except (TimeoutError, ray.exceptions.RayError) as exc:
            log.info("could not stop an engine through its actor (%s)", _brief(exc))
        finally:
            ray.kill(actor)  # frees its resources; a dead actor is fine

    async def close(self) -> None:
        if self._ray is not None:
            self._ray.shutdown()
            self._ray = None


def _reachable(address: str, timeout_s: float = 5.0) -> None:
    """EngineError unless something accepts TCP connections at ``HOST:PORT``."""
    host, _, port = address.rpartition(":")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout_s).close()
    except OSError as exc:
        raise EngineError(f"cannot reach the Ray cluster at {address}: {exc}") from exc


def _brief(error: BaseException) -> str:
    """Ray's errors run to many lines: the type and the first one."""
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0] if lines else ''}"[:200]


async def _result(ref: Any) -> Any:
    """Await a Ray ObjectRef on any event loop (uvloop included)."""
    return await asyncio.wrap_future(ref.future())
