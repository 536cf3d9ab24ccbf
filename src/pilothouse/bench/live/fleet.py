"""Launch what ``bench live --launch-sim N`` measures: engines, then one front door per policy.

The engines are N ``pilothouse engine sim`` replicas started by the local executor
(:class:`~pilothouse.controlplane.local.LocalFleet`, the code behind ``pilothouse up``). In
front of them, per policy, one of:

- a pilothouse scheduler config (a built-in name or a YAML path): ``pilothouse gateway -f``
  on a generated fleet file whose model lists the engines as ``engine: sim`` endpoints,
  with the access log off and the metrics probe every ``scrape_interval_s`` simulated
  seconds (at least :data:`MIN_PROBE_S` wall seconds);
- ``vllm-router:POLICY`` (a peer, :mod:`.live_peers`): the ``vllm-router`` binary with
  ``--policy POLICY`` over the same engines.

Every child gets ``PR_SET_PDEATHSIG``, and every one is stopped (SIGTERM, then SIGKILL after
a grace period) when its context exits, whatever happened: no orphans.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import yaml

from pilothouse.bench.live.peers import is_peer, peer_command
from pilothouse.bench.live.run import Level, LiveRun, LiveSettings, LiveTarget, Progress, run_target
from pilothouse.bench.workloads import Workload
from pilothouse.config.fleet import FleetSpec, GatewaySpec, ModelSpec
from pilothouse.controlplane.local import LocalFleet, die_with_parent, free_port
from pilothouse.errors import EngineError

MIN_PROBE_S = 0.1
READY_PREFIX = "pilothouse is ready: "
_GRACE_S = 10.0


@dataclass(frozen=True, slots=True)
class SimFleetSpec:
    """The launched engines: N replicas of one preset at one time scale.

    ``engine_args`` are further ``engine sim`` flags without the dashes, e.g.
    ``(("num-gpu-blocks-override", "1024"),)``.
    """

    replicas: int
    preset: str
    time_scale: float = 1.0
    model: str = "sim-model"
    ready_timeout_s: float = 60.0
    engine_args: tuple[tuple[str, str], ...] = ()


@contextlib.asynccontextmanager
async def sim_fleet(spec: SimFleetSpec, log_dir: Path) -> AsyncIterator[list[str]]:
    """Start the engines; yields their addresses (``host:port``); stops them on exit."""
    args: dict[str, str | int | float | bool] = {
        "preset": spec.preset,
        "time-scale": spec.time_scale,
        **dict(spec.engine_args),
    }
    model = ModelSpec(name=spec.model, engine="sim", replicas=spec.replicas, args=args)
    fleet = LocalFleet(FleetSpec(models=[model]), log_dir)
    try:
        endpoints = await fleet.start()
        await fleet.wait_ready(spec.ready_timeout_s)
        yield [endpoint.address for endpoint in endpoints]
    finally:
        await fleet.stop(_GRACE_S)


def gateway_fleet_file(
    path: Path, model: str, addresses: Sequence[str], policy: str, probe_s: float
) -> Path:
    """Write the fleet file ``pilothouse gateway -f`` runs for ``policy``."""
    scheduler = str(Path(policy).resolve()) if _is_file(policy) else policy
    spec = FleetSpec(
        models=[ModelSpec(name=model, engine="sim", endpoints=list(addresses))],
        gateway=GatewaySpec(
            port=0,
            scheduler=scheduler,
            access_log=False,
            probe_interval_s=max(MIN_PROBE_S, probe_s),
        ),
    )
    path.write_text(yaml.safe_dump(spec.model_dump(by_alias=True, mode="json"), sort_keys=False))
    return path


def _make_dir(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True)


def _is_file(policy: str) -> bool:
    return policy.endswith((".yaml", ".yml"))


def policy_label(policy: str) -> str:
    """How a policy is named in reports: a YAML file by its stem."""
    return Path(policy).stem if _is_file(policy) else policy


async def _start(argv: Sequence[str], log: Path, *, pipe: bool) -> asyncio.subprocess.Process:
    """Start ``argv``; stdout is a pipe (to read a ready line) or goes to the log."""
    with log.open("ab") as err:
        try:
            return await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE if pipe else err,
                stderr=err,
                preexec_fn=die_with_parent,
            )
        except OSError as exc:
            raise EngineError(f"cannot start {argv[0]}: {exc}") from exc


async def _stop(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            process.terminate()
        try:
            await asyncio.wait_for(process.wait(), _GRACE_S)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()


async def _ready_line(process: asyncio.subprocess.Process, timeout_s: float, log: Path) -> str:
    """The URL a pilothouse process announces on stdout."""
    assert process.stdout is not None
    deadline = time.monotonic() + timeout_s
    while (left := deadline - time.monotonic()) > 0:
        try:
            line = await asyncio.wait_for(process.stdout.readline(), left)
        except TimeoutError:
            break
        if line.decode().startswith(READY_PREFIX):
            return line.decode().removeprefix(READY_PREFIX).strip()
        if not line:
            break
    raise EngineError(f"{log.stem} did not become ready in {timeout_s:.0f} s; see {log}")


async def _wait_healthy(
    url: str, process: asyncio.subprocess.Process, timeout_s: float, log: Path
) -> None:
    deadline = time.monotonic() + timeout_s
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2.0)) as session:
        while time.monotonic() < deadline and process.returncode is None:
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                async with session.get(url) as resp:
                    if resp.status == 200:
                        return
            await asyncio.sleep(0.1)
    raise EngineError(f"{url} did not answer 200 within {timeout_s:.0f} s; see {log}")


@contextlib.asynccontextmanager
async def front_door(
    policy: str,
    fleet: SimFleetSpec,
    addresses: Sequence[str],
    work_dir: Path,
    scrape_interval_s: float,
) -> AsyncIterator[LiveTarget]:
    """Start the router for ``policy`` in front of ``addresses``; yields the target."""
    label = policy_label(policy)
    safe = label.replace(":", "-").replace("/", "-")
    log = work_dir / f"router-{safe}.log"
    probe_s = max(MIN_PROBE_S, scrape_interval_s / fleet.time_scale)
    if is_peer(policy):
        port = free_port()
        argv = peer_command(policy, port, [f"http://{a}" for a in addresses], free_port())
        url = f"http://127.0.0.1:{port}"
    else:
        spec_path = gateway_fleet_file(
            work_dir / f"fleet-{safe}.yaml", fleet.model, addresses, policy, probe_s
        )
        argv = [sys.executable, "-m", "pilothouse", "gateway", "-f", str(spec_path)]
    process = await _start(argv, log, pipe=not is_peer(policy))
    try:
        if is_peer(policy):
            await _wait_healthy(f"{url}/health", process, fleet.ready_timeout_s, log)
        else:
            url = await _ready_line(process, fleet.ready_timeout_s, log)
            ready = f"{url.removesuffix('/v1')}/ready"
            await _wait_healthy(ready, process, fleet.ready_timeout_s, log)
            await asyncio.sleep(probe_s)  # one more probe round: every engine is ready
        yield LiveTarget(
            name=label,
            url=url,
            metrics_urls=tuple(f"http://{a}/metrics" for a in addresses),
            reset_urls=tuple(f"http://{a}/reset_prefix_cache" for a in addresses),
        )
    finally:
        await _stop(process)


async def run_launched(
    fleet: SimFleetSpec,
    policies: Sequence[str],
    settings: LiveSettings,
    workload: Workload,
    levels: Sequence[Level],
    work_dir: Path,
    *,
    scrape_interval_s: float = 0.05,
    progress: Progress | None = None,
    on_target: Callable[[str], None] | None = None,
) -> list[LiveRun]:
    """Start the engines once, then per policy its front door, every level, and stop it.

    The engines' prefix caches are reset before every level, so each run starts cold as
    in ``bench sim``. Logs and generated fleet files go to ``work_dir``.
    """
    _make_dir(work_dir)
    runs: list[LiveRun] = []
    async with sim_fleet(fleet, work_dir / "engines") as addresses:
        for policy in policies:
            if on_target is not None:
                on_target(policy_label(policy))
            async with front_door(policy, fleet, addresses, work_dir, scrape_interval_s) as target:
                runs += await run_target(target, settings, workload, levels, progress)
    return runs
