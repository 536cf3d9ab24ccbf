"""What `pilothouse up` and `pilothouse gateway` do, as plain async functions."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from pilothouse.config.fleet import FleetSpec, embedded_fleet, load_fleet
from pilothouse.controlplane.local import LocalFleet, default_log_dir
from pilothouse.errors import ConfigError
from pilothouse.gateway.serve import build_gateway, serve
from pilothouse.scheduling.config import resolve_config


@dataclass(frozen=True, slots=True)
class FleetOverrides:
    """Command-line values that win over the fleet file."""

    replicas: int | None = None
    port: int | None = None
    host: str | None = None
    scheduler: str | None = None
    api_key: str | None = None

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
            models = [
                m.model_copy(update={"replicas": self.replicas}) if m.launched else m
                for m in models
            ]
        return spec.model_copy(
            update={"models": models, "gateway": spec.gateway.model_copy(update=gateway)}
        )


def _console() -> Console:
    return Console(stderr=True)


async def run_up(
    fleet_file: Path | None, overrides: FleetOverrides, log_dir: Path | None, ready_timeout: float
) -> None:
    spec = overrides.apply(load_fleet(fleet_file) if fleet_file else embedded_fleet())
    resolve_config(spec.gateway.scheduler)  # fail before starting anything
    console = _console()
    fleet = LocalFleet(spec, log_dir or default_log_dir())
    try:
        endpoints = await fleet.start()
        with console.status(f"starting {len(endpoints)} replica(s); logs in {fleet.log_dir}"):
            await fleet.wait_ready(
                ready_timeout, lambda e: console.log(f"replica {e.name} ready on {e.address}")
            )
        app = build_gateway(spec, endpoints, ready=True)
        await serve(app, spec.gateway.host, spec.gateway.port, _announce, _stopping(console))
    finally:
        await fleet.stop()
        console.log("stopped every replica")


async def run_gateway(fleet_file: Path, overrides: FleetOverrides) -> None:
    spec = overrides.apply(load_fleet(fleet_file))
    if not any(m.endpoints for m in spec.models):
        raise ConfigError(
            "no model lists 'endpoints': `pilothouse gateway` launches nothing; "
            "use `pilothouse up` to start replicas",
            path="models",
        )
    app = build_gateway(spec, [])
    await serve(app, spec.gateway.host, spec.gateway.port, _announce)


def _announce(url: str) -> None:
    print(f"pilothouse is ready: {url}", flush=True)


def _stopping(console: Console):  # type: ignore[no-untyped-def]
    async def stopping() -> None:
        console.log("gateway drained; stopping replicas")

    return stopping
