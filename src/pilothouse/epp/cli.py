"""``pilothouse epp``: the click command (registered by :mod:`pilothouse.cli`).

gRPC and the Envoy protos are imported only when the command runs, so ``--help`` works
without the ``epp`` extra installed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from pathlib import Path
from typing import Any

import click

from pilothouse.endpoints.discovery import EndpointSource
from pilothouse.errors import ConfigError, PilothouseError

READY_PREFIX = "pilothouse is ready: "
_PORT = click.IntRange(0, 65535)
_EXTRA_HINT = "pip install 'pilothouse[epp]' (grpcio, grpcio-health-checking, xds-protos)"

EPILOG = """\b
Examples:
  pilothouse epp --endpoints-file endpoints.yaml
  pilothouse epp --pool-name vllm-llama --pool-namespace default --host 0.0.0.0
  envoy -c examples/envoy/envoy.yaml   # Envoy in front, see docs/epp.md

Prints "pilothouse is ready: grpc://HOST:PORT" on stdout once listening.
"""


@click.command(name="epp", epilog=EPILOG)
@click.option(
    "--endpoints-file", type=click.Path(dir_okay=False, path_type=Path),
    help="YAML list of model servers (address, name, engine, labels); watched for changes.",
)  # fmt: skip
@click.option("--pool-name", help="Kubernetes InferencePool to watch (instead of a file).")
@click.option(
    "--pool-namespace", default="default", show_default=True, help="Namespace of the pool."
)
@click.option(
    "--scheduler", default="default", show_default=True,
    help="Builtin scheduler config name or a YAML file (see docs/scheduling.md).",
)  # fmt: skip
@click.option("--host", default="127.0.0.1", show_default=True, help="Bind address (all ports).")
@click.option("--port", type=_PORT, default=9002, show_default=True, help="ext_proc gRPC port.")
@click.option("--health-port", type=_PORT, default=9003, show_default=True, help="gRPC health.")
@click.option("--metrics-port", type=_PORT, default=9090, show_default=True, help="/metrics.")
@click.option(
    "--probe-interval", type=click.FloatRange(0.01, 60.0), default=0.5, show_default=True,
    help="Seconds between health probes and metrics scrapes of each endpoint.",
)  # fmt: skip
@click.option(
    "--max-body-bytes", type=click.IntRange(min=1), default=10 * 1024 * 1024, show_default=True,
    help="Largest request body buffered for scheduling (larger: 413).",
)  # fmt: skip
@click.option(
    "--config", "policy_file", type=click.Path(dir_okay=False, path_type=Path),
    help="YAML routing policy: flow_control, hold, traffic splits, fallback_endpoints "
    "(see docs/epp.md).",
)  # fmt: skip
@click.option(
    "--secure-serving", type=click.BOOL, default=True, is_flag=False, flag_value=True,
    show_default=True, metavar="[BOOL]",
    help="Serve ext_proc over TLS (the reference picker's flag; --secure-serving=false "
    "serves plaintext). Health and metrics are plaintext either way.",
)  # fmt: skip
@click.option("--plaintext", is_flag=True, help="Same as --secure-serving=false.")
@click.option(
    "--cert-path", type=click.Path(path_type=Path),
    help="Directory with tls.crt and tls.key to serve (a mounted kubernetes.io/tls Secret); "
    "default: a self-signed certificate generated at start.",
)  # fmt: skip
@click.option("--seed", type=int, default=None, help="Seed the scheduler's random choices.")
@click.option(
    "--kv-events", is_flag=True,
    help="Follow the endpoints' KV-cache events (labels pilothouse.dev/kv-events, kv-replay) "
    "for a precise-prefix scorer in the scheduler config; see docs/kv-events.md.",
)  # fmt: skip
def epp_command(**options: Any) -> None:
    """Run the endpoint picker for Envoy-based gateways (Gateway API Inference Extension).

    Envoy's ext_proc filter streams every request to the picker, which schedules it with
    the same scheduler the standalone gateway uses and answers with the chosen endpoint
    in the x-gateway-destination-endpoint header. ext_proc is served over TLS by default,
    with a self-signed certificate unless --cert-path is given (gateways such as kgateway
    and Istio with GAIE's DestinationRule connect with TLS without verifying it).
    """
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        source, pool_key = _source(options)
        scheduler, kv_events = _scheduler(
            options["scheduler"], options["seed"], options["kv_events"]
        )
        settings = _settings(options, pool_key)
        from pilothouse.epp.server import EppServer
    except ImportError as exc:
        raise click.ClickException(
            f"the endpoint picker needs the epp extra: {_EXTRA_HINT}"
        ) from exc
    except PilothouseError as exc:
        raise click.UsageError(str(exc)) from exc
    tokenize = kv_events is not None
    server = EppServer(settings, source, scheduler, kv_events=kv_events, tokenize=tokenize)
    asyncio.run(_serve(server))


def _source(options: dict[str, Any]) -> tuple[EndpointSource, str]:
    path, pool = options["endpoints_file"], options["pool_name"]
    if (path is None) == (pool is None):
        raise ConfigError("give exactly one of --endpoints-file and --pool-name")
    if path is not None:
        from pilothouse.endpoints.file_source import FileSource

        source = FileSource(path)
        source.load()  # fail now on a missing or invalid file
        return source, "pool"
    try:
        from pilothouse.endpoints.kubernetes import InferencePoolSource
    except ImportError as exc:
        raise ConfigError(
            "Kubernetes discovery is not available in this installation "
            f"(pilothouse.endpoints.kubernetes could not be imported: {exc})"
        ) from exc
    return InferencePoolSource(pool, options["pool_namespace"]), pool


def _scheduler(name: str, seed: int | None, kv_events: bool) -> tuple[Any, Any]:
    from pilothouse.clock import SystemClock
    from pilothouse.endpoints.kv_subscriber import build_kv_scheduler
    from pilothouse.scheduling.config import resolve_config

    # With KV events, prompts are tokenized before scheduling, in a worker (EppServer's
    # producer): the scheduler never tokenizes inside a decision.
    return build_kv_scheduler(
        resolve_config(name),
        SystemClock(),
        kv_events=kv_events,
        seed=seed,
        inline_tokenizer=not kv_events,
    )


def _tls(options: dict[str, Any]) -> tuple[bool, Path | None]:
    secure = bool(options["secure_serving"]) and not options["plaintext"]
    cert_path: Path | None = options["cert_path"]
    if cert_path is not None and not secure:
        raise ConfigError("--cert-path needs TLS: drop --plaintext / --secure-serving=false")
    if cert_path is not None:
        from pilothouse.epp.tls import load_pair

        load_pair(cert_path)  # fail now, with the file's name, not when gRPC starts
    return secure, cert_path


def _settings(options: dict[str, Any], pool_key: str) -> Any:
    from pilothouse.config.epp import EppPolicy, load_epp_policy
    from pilothouse.epp.server import EppSettings

    path = options["policy_file"]
    policy = load_epp_policy(path) if path is not None else EppPolicy()
    secure, cert_path = _tls(options)
    return EppSettings(
        host=options["host"],
        port=options["port"],
        health_port=options["health_port"],
        metrics_port=options["metrics_port"],
        pool_key=pool_key,
        max_body_bytes=options["max_body_bytes"],
        probe_interval_s=options["probe_interval"],
        policy=policy,
        secure_serving=secure,
        cert_path=cert_path,
    )


def _security(server: Any) -> str:
    certificate = server.certificate
    if certificate is None:
        return "plaintext"
    return "TLS, self-signed certificate" if certificate.generated else "TLS, --cert-path"


async def _serve(server: Any) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    try:
        await server.start()
    except OSError as exc:
        await server.stop()
        raise click.ClickException(f"cannot listen: {exc}") from exc
    host = server.settings.host
    print(f"{READY_PREFIX}grpc://{host}:{server.port}", flush=True)
    print(
        f"ext_proc: {_security(server)}  health: grpc://{host}:{server.health_port} (plaintext)"
        f"  metrics: http://{host}:{server.metrics_port}/metrics",
        file=sys.stderr,
        flush=True,
    )
    try:
        await stop.wait()
    finally:
        await server.stop()
