"""What `pilothouse up` and `pilothouse gateway` do, as plain async functions."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import ValidationError
from rich.console import Console
from starlette.applications import Starlette

from pilothouse.config.fleet import FleetSpec, ModelSpec, embedded_fleet, load_fleet
from pilothouse.config.ray import RaySpec
from pilothouse.controlplane.changes import ApplyReport
from pilothouse.controlplane.executor import LocalExecutor
from pilothouse.controlplane.features import pending_features
from pilothouse.controlplane.local import default_log_dir
from pilothouse.controlplane.replicas import ReplicaRuntime
from pilothouse.controlplane.services import ServiceCommand, Services
from pilothouse.controlplane.signals import GatewaySignals
from pilothouse.controlplane.watch import watch_spec
from pilothouse.engines.launch import check_prerequisites
from pilothouse.errors import ConfigError
from pilothouse.gateway.admin import admin_routes
from pilothouse.gateway.app import GatewayApp
from pilothouse.gateway.context import GatewayContext
from pilothouse.gateway.serve import bind, build_gateway, serve
from pilothouse.scheduling.config import resolve_config


@dataclass(frozen=True, slots=True)
class FleetOverrides:
    """Command-line values that win over the fleet file (and over every reload of it)."""

    replicas: int | None = None
    port: int | None = None
    host: str | None = None
    scheduler: str | None = None
    api_key: str | None = None
    ray_address: str | None = None

    def apply(self, spec: FleetSpec) -> FleetSpec:
        gateway = {
            k: v
            for k, v in (
                ("port", self.port),
                ("host", self.host),
                ("scheduler", self.scheduler),
                ("api_key", self.api_key),
            )
            if v is not None
        }
        models = spec.models
        if self.replicas is not None:
            models = [self._replicas(m) if m.launched else m for m in models]
        ray = spec.ray
        if self.ray_address is not None:
            data = {**ray.model_dump(), "address": self.ray_address}
            try:
                ray = RaySpec.model_validate(data)
            except ValidationError as exc:
                raise ConfigError(
                    f"--ray-address '{self.ray_address}' is not HOST:PORT or 'auto'"
                ) from exc
        return spec.model_copy(
            update={
                "models": models,
                "gateway": spec.gateway.model_copy(update=gateway),
                "ray": ray,
            }
        )

    def _replicas(self, model: ModelSpec) -> ModelSpec:
        """``--replicas``: the fixed count, or the start count within autoscaling's bounds."""
        assert self.replicas is not None
        low, high = model.bounds if model.autoscaling is not None else (0, 64)
        return model.model_copy(update={"replicas": min(max(self.replicas, low), high)})


def launched_models(spec: FleetSpec) -> list[str]:
    return [m.name for m in spec.models if m.launched]


def _console() -> Console:
    return Console(stderr=True)


Executor = Literal["local", "ray"]


async def run_up(
    fleet_file: Path | None,
    overrides: FleetOverrides,
    log_dir: Path | None,
    ready_timeout: float,
    executor_kind: Executor = "local",
) -> None:
    spec = overrides.apply(load_fleet(fleet_file) if fleet_file else embedded_fleet())
    resolve_config(spec.gateway.scheduler)  # fail before starting anything
    if executor_kind == "local":  # Ray's nodes have environments of their own
        check_prerequisites(spec)
    console = _console()
    for note in pending_features(spec):
        console.log(f"note: {note}")
    sock = bind(spec.gateway.host, spec.gateway.port)  # a port in use fails before replicas
    app = build_gateway(spec, [])
    ctx = app.ctx
    log_dir = log_dir or default_log_dir()
    executor = LocalExecutor(
        spec,
        ctx.pool,
        log_dir,
        signals=GatewaySignals(ctx.pool, ctx.pipeline.held, ctx.metrics.registry),
        runtime=_runtime(executor_kind, spec, log_dir),
    )
    _wire(app.app, ctx, executor, overrides, check=executor_kind == "local")
    tasks: list[asyncio.Task[None]] = []
    services = Services(executor.log_dir, spec.local.stop_grace_s)
    try:
        with console.status(f"starting replicas; logs in {executor.log_dir}"):
            await executor.start(
                ready_timeout,
                lambda name, address: console.log(f"replica {name} ready on {address}"),
            )
        tasks.append(_task(executor.run()))
        if fleet_file is not None:
            gateway_url = f"http://{_loopback(spec.gateway.host)}:{sock.getsockname()[1]}"
            await _start_services(services, spec, fleet_file, gateway_url, console)
            ready_s = spec.local.service_ready_timeout_s
            tasks.extend(
                _task(services.supervise(service, spec.local, ready_s, console.log))
                for service in list(services.running)
            )
        if fleet_file is not None:
            apply = _applier(executor, overrides, executor_kind == "local")
            tasks.append(_task(watch_spec(fleet_file, spec.local, apply)))
        gateway = spec.gateway
        await serve(
            app, gateway.host, gateway.port, _announce, _stopping(console),
            sock=sock, drain_s=gateway.drain_timeout_s, http=gateway.http,
            on_refused=_count_refusals(app),
        )  # fmt: skip
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await services.stop()
        await executor.stop()
        sock.close()  # uvicorn closed it once serving; not when a replica failed to start
        console.log("stopped every replica")


def tool_gateway_command(spec: FleetSpec, fleet_file: Path) -> ServiceCommand:
    """``toolgateway -f FILE`` on the gateway's host at ``local.tool_gateway_port``."""
    port = str(spec.local.tool_gateway_port)
    argv = ["toolgateway", "-f", str(fleet_file), "--host", spec.gateway.host, "--port", port]
    return ServiceCommand("tool-gateway", argv)


def agents_command(
    spec: FleetSpec, fleet_file: Path, gateway_url: str, tools_url: str | None
) -> ServiceCommand:
    """``agent serve -f FILE``: every agent of the fleet, calling this gateway and tool
    gateway, each with its own key (made on first start, see docs/agents.md)."""
    port = str(spec.local.agents_port)
    argv = ["agent", "serve", "-f", str(fleet_file), "--host", spec.gateway.host]
    argv += ["--port", port, "--gateway-url", gateway_url]
    if tools_url is not None:
        argv += ["--toolgateway-url", tools_url]
    return ServiceCommand("agents", argv)


async def _start_services(
    services: Services, spec: FleetSpec, fleet_file: Path, gateway_url: str, console: Console
) -> None:
    """The tool gateway (a fleet with ``tools:``), then the agents (with ``agents:``)."""
    ready_s = spec.local.service_ready_timeout_s
    tools_url = None
    if spec.tools is not None:
        with console.status("starting the tool gateway"):
            tools = await services.start(tool_gateway_command(spec, fleet_file), ready_s)
        tools_url = tools.url
        console.log(f"tool-gateway ready on {tools_url}")
    if spec.agents:
        command = agents_command(spec, fleet_file, gateway_url, tools_url)
        with console.status("starting the agents"):
            agents = await services.start(command, ready_s)
        console.log(f"agents ready on {agents.url}")


def _loopback(host: str) -> str:
    """How a child process on this machine reaches a server bound to ``host``."""
    return "127.0.0.1" if host in ("0.0.0.0", "", "::") else host


def _runtime(kind: Executor, spec: FleetSpec, log_dir: Path) -> ReplicaRuntime | None:
    """Where replicas run: None for local child processes, else a joined Ray cluster."""
    if kind == "local":
        return None
    from pilothouse.controlplane.ray_runtime import RayRuntime  # imports ray: only here

    runtime = RayRuntime(spec.ray, log_dir)
    runtime.connect()
    return runtime


def _wire(
    app: Starlette,
    ctx: GatewayContext,
    executor: LocalExecutor,
    overrides: FleetOverrides,
    *,
    check: bool,
) -> None:
    """Hold requests for launched models, follow applied specs, and serve /admin/fleet."""
    ctx.pipeline.hold_for(launched_models(executor.spec), executor.demand)
    executor.on_apply(lambda spec: ctx.pipeline.set_hold_models(launched_models(spec)))
    executor.on_apply(ctx.adopt)  # adapters and traffic-split weights
    ctx.control_status = executor.status  # the web console's fleet page
    routes = admin_routes(ctx, _applier(executor, overrides, check), executor.status)
    app.router.routes.extend(routes)


def _applier(
    executor: LocalExecutor, overrides: FleetOverrides, check: bool
) -> Callable[[FleetSpec], ApplyReport]:
    """Apply a new spec; with ``check``, refuse one whose engines cannot start here."""

    def apply(spec: FleetSpec) -> ApplyReport:
        spec = overrides.apply(spec)
        if check:
            check_prerequisites(spec)
        return executor.apply(spec)

    return apply


def _task(coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
    return asyncio.get_running_loop().create_task(coro)


async def run_gateway(fleet_file: Path, overrides: FleetOverrides) -> None:
    spec = overrides.apply(load_fleet(fleet_file))
    if not any(m.endpoints for m in spec.models):
        raise ConfigError(
            "no model lists 'endpoints': `pilothouse gateway` launches nothing; "
            "use `pilothouse up` to start replicas",
            path="models",
        )
    app = build_gateway(spec, [])
    gateway = spec.gateway
    await serve(
        app, gateway.host, gateway.port, _announce,
        drain_s=gateway.drain_timeout_s, http=gateway.http, on_refused=_count_refusals(app),
    )  # fmt: skip


def _announce(url: str) -> None:
    print(f"pilothouse is ready: {url}", flush=True)


def _stopping(console: Console) -> Callable[[], Awaitable[None]]:
    async def stopping() -> None:
        console.log("gateway drained; stopping replicas")

    return stopping


def _count_refusals(app: GatewayApp) -> Callable[[int], None]:
    """Count requests the HTTP limits refused (431, 408) in the gateway's metrics."""
    refused = app.ctx.metrics.http_refused

    def count(status: int) -> None:
        refused.labels(str(status)).inc()

    return count
