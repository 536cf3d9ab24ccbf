"""The executor's pluggable replica runtime, with fakes (no processes, no Ray).

A fake runtime hands out handles whose endpoint is one in-process health server on loopback;
the test decides when a handle "exits". Also: the Ray runtime's handle, resource mapping and
spec, which need no Ray either.
"""

from __future__ import annotations

import concurrent.futures
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from pilothouse.clock import ManualClock
from pilothouse.config.fleet import FleetSpec, ModelSpec, load_fleet
from pilothouse.config.ray import RaySpec
from pilothouse.controlplane.executor import LocalExecutor
from pilothouse.controlplane.ray_actor import StartedEngine
from pilothouse.controlplane.ray_runtime import RayReplica, actor_options, quantity
from pilothouse.endpoints.pool import EndpointPool
from pilothouse.errors import ConfigError, EngineError
from pilothouse.runner import FleetOverrides
from pilothouse.scheduling.types import Endpoint

LOCAL = {"restart_backoff_s": 1, "restart_backoff_max_s": 4, "stop_grace_s": 3}


class FakeHandle:
    def __init__(self, endpoint: Endpoint, pid: int) -> None:
        self.endpoint = endpoint
        self.pid = pid
        self.exited = False
        self.stops: list[float] = []

    def describe_exit(self) -> str:
        return f"fake {self.endpoint.name} exited"

    async def stop(self, grace_s: float) -> None:
        self.stops.append(grace_s)
        self.exited = True


class FakeRuntime:
    """Spawns handles on ``address``; fails the spawns of the names in ``failing`` once."""

    def __init__(self, address: str, failing: set[str] | None = None) -> None:
        self.address = address
        self.failing = failing or set()
        self.spawned: list[FakeHandle] = []
        self.closed = False

    async def spawn(self, model: ModelSpec, name: str) -> FakeHandle:
        if name in self.failing:
            self.failing.discard(name)
            raise EngineError(f"no room for {name}")
        endpoint = Endpoint(name=name, address=self.address, model=model.name, engine=model.engine)
        handle = FakeHandle(endpoint, pid=1000 + len(self.spawned))
        self.spawned.append(handle)
        return handle

    async def close(self) -> None:
        self.closed = True


@pytest.fixture
async def health() -> AsyncIterator[str]:
    """A loopback server that answers the sim engine's health path."""

    async def ok(_: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/health", ok)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"127.0.0.1:{port}"
    finally:
        await runner.cleanup()


def fleet(replicas: int = 2) -> FleetSpec:
    return FleetSpec.model_validate(
        {"models": [{"name": "m", "engine": "sim", "replicas": replicas}], "local": LOCAL}
    )


def executor(runtime: FakeRuntime, clock: ManualClock) -> tuple[LocalExecutor, EndpointPool]:
    pool = EndpointPool()
    return LocalExecutor(fleet(), pool, Path("unused"), clock=clock, runtime=runtime), pool


def phases(ex: LocalExecutor) -> dict[str, tuple[object, object, object]]:
    replicas = ex.status()["replicas"]
    assert isinstance(replicas, list)
    return {r["name"]: (r["phase"], r["pid"], r["restarts"]) for r in replicas}


async def test_replicas_come_from_the_runtime_and_stop_through_their_handles(health: str) -> None:
    runtime = FakeRuntime(health)
    ex, pool = executor(runtime, ManualClock())
    await ex.start(timeout_s=10)
    assert phases(ex) == {"m-0": ("ready", 1000, 0), "m-1": ("ready", 1001, 0)}
    assert [e.name for e in pool.candidates("m")] == ["m-0", "m-1"]
    await ex.stop()
    assert [h.stops for h in runtime.spawned] == [[3.0], [3.0]]
    assert runtime.closed
    assert not pool.has_endpoint("m-0")


async def test_an_exited_handle_is_a_crash_and_is_restarted_after_the_backoff(
    health: str,
) -> None:
    runtime, clock = FakeRuntime(health), ManualClock()
    ex, pool = executor(runtime, clock)
    await ex.start(timeout_s=10)
    first = runtime.spawned[0]
    first.exited = True
    await ex.tick()
    assert phases(ex)["m-0"] == ("crashed", 1000, 0)
    assert [e.name for e in pool.candidates("m")] == ["m-1"]
    clock.advance(0.5)
    await ex.tick()  # still inside the 1 s backoff
    assert len(runtime.spawned) == 2
    clock.advance(0.6)
    await ex.tick()  # restarted: the old handle stopped, a new one starting
    assert first.stops == [3.0]
    assert phases(ex)["m-0"] == ("starting", 1002, 1)
    await ex.tick()  # probed healthy
    assert phases(ex)["m-0"] == ("ready", 1002, 1)
    assert sorted(e.name for e in pool.candidates("m")) == ["m-0", "m-1"]
    await ex.stop()


async def test_a_failed_spawn_is_a_crash_and_is_retried(health: str) -> None:
    runtime, clock = FakeRuntime(health, failing={"m-1"}), ManualClock()
    ex, _ = executor(runtime, clock)
    try:
        with pytest.raises(EngineError, match="m-1 could not be started"):
            await ex.start(timeout_s=10)  # `up` fails fast on its initial replicas
        assert phases(ex)["m-1"] == ("crashed", None, 1)
        clock.advance(2.1)  # the backoff after one crash: 1 s x 2
        await ex.tick()
        await ex.tick()
        assert phases(ex)["m-1"] == ("ready", 1001, 2)  # the failed start counted as one
    finally:
        await ex.stop()


# -- the Ray runtime's pieces that need no Ray ----------------------------------------------


def ray_handle(
    stops: list[float],
) -> tuple[RayReplica, concurrent.futures.Future[int]]:
    done: concurrent.futures.Future[int] = concurrent.futures.Future()

    async def stop(grace_s: float) -> None:
        stops.append(grace_s)

    started = StartedEngine("10.0.0.7:4100", 77, "/logs/m-0.log", "10.0.0.7")
    endpoint = Endpoint(name="m-0", address=started.address, model="m", engine="sim")
    return RayReplica(endpoint, started, stop, done), done


def test_a_ray_replica_exits_when_its_engine_exits() -> None:
    handle, done = ray_handle([])
    assert (handle.exited, handle.pid) == (False, 77)
    done.set_result(-9)
    assert handle.exited
    assert handle.describe_exit() == (
        "replica m-0 exited with code -9; see /logs/m-0.log on 10.0.0.7"
    )


def test_a_ray_replica_exits_when_its_actor_dies() -> None:
    handle, done = ray_handle([])
    done.set_exception(RuntimeError("The actor died unexpectedly.\n\tclass_name: EngineHost"))
    assert handle.exited
    assert "lost its Ray actor (RuntimeError: The actor died unexpectedly.)" in (
        handle.describe_exit()
    )


async def test_stopping_a_ray_replica_goes_through_the_runtime() -> None:
    stops: list[float] = []
    handle, _ = ray_handle(stops)
    await handle.stop(2.5)
    assert stops == [2.5]
    assert handle.exited


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ({"engine": "sim"}, {"num_cpus": 0.25, "num_gpus": 0.0}),
        ({"engine": "llamacpp"}, {"num_cpus": 1.0, "num_gpus": 0.0}),
        ({"engine": "vllm", "source": "hf://o/m"}, {"num_cpus": 4.0, "num_gpus": 1.0}),
        (
            {"engine": "vllm", "source": "hf://o/m", "args": {"tensor-parallel-size": 2}},
            {"num_cpus": 4.0, "num_gpus": 2.0},
        ),
        (
            {"engine": "sim", "resources": {"cpu": "500m", "gpus": 1, "memory": "1Gi"}},
            {"num_cpus": 0.5, "num_gpus": 1.0, "memory": float(2**30)},
        ),
        (
            {"engine": "sim", "resources": {"cpu": "2", "memory": "1.5G"}},
            {"num_cpus": 2.0, "num_gpus": 0.0, "memory": 1.5e9},
        ),
    ],
)
def test_actor_resources_follow_the_model(
    model: dict[str, object], expected: dict[str, float]
) -> None:
    assert actor_options(ModelSpec.model_validate({"name": "m", **model})) == expected


QUANTITIES = [("2", 2.0), ("+1.5", 1.5), ("100m", 0.1), ("1e3", 1000.0), ("2Ki", 2048.0),
              ("1E", 1e18)]  # fmt: skip


@pytest.mark.parametrize(("text", "value"), QUANTITIES)
def test_quantities(text: str, value: float) -> None:
    assert quantity(text, "f") == value


def test_a_quantity_ray_cannot_use_is_a_config_error() -> None:
    model = ModelSpec.model_validate({"name": "m", "engine": "sim", "resources": {"cpu": "-1"}})
    with pytest.raises(ConfigError, match="'-1' is not a quantity"):
        actor_options(model)


def test_the_ray_section_and_its_command_line_override(tmp_path: Path) -> None:
    path = tmp_path / "fleet.yaml"
    path.write_text(
        "models: [{name: m, engine: sim}]\n"
        "ray: {address: 'head.example:6379', namespace: team-a, start_timeout_s: 30}\n"
    )
    spec = load_fleet(path)
    assert spec.ray == RaySpec(address="head.example:6379", namespace="team-a", start_timeout_s=30)
    assert FleetOverrides(ray_address="auto").apply(spec).ray.address == "auto"
    assert FleetOverrides().apply(spec).ray == spec.ray
    with pytest.raises(
        ConfigError, match="--ray-address 'ray://head:10001' is not HOST:PORT or 'auto'"
    ):
        FleetOverrides(ray_address="ray://head:10001").apply(spec)
    assert FleetSpec.model_validate({"models": [{"name": "m"}]}).ray.address is None
    path.write_text("models: [{name: m, engine: sim}]\nray: {address: 'no port', extra: 1}\n")
    with pytest.raises(ConfigError) as info:
        load_fleet(path)
    assert any("ray.address" in p for p in info.value.problems)
    assert any("ray.extra" in p for p in info.value.problems)
