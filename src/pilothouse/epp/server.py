"""The endpoint picker process: ext_proc gRPC server, health server, metrics, discovery.

:class:`EppServer` wires the same pieces the standalone gateway uses (one
:class:`EndpointPool`, one :class:`RoutingPipeline` over the scheduler objects, the
:class:`EndpointMonitor`) behind Envoy's ext_proc protocol instead of an HTTP proxy::

    EndpointSource ──sync──► EndpointPool ◄── EndpointMonitor (health, /metrics)
                                  │
    Envoy ──ext_proc──► ExtProcService ─► Exchange ─► RoutingPipeline ─► Scheduler

Three listeners on ``settings.host``: ext_proc (9002), gRPC health (9003) and Prometheus
``/metrics`` over HTTP (9090). Port 0 binds a free port (see the ``*_port`` attributes once
started). ext_proc is served with TLS unless ``secure_serving`` is off: the certificate in
``cert_path`` (``tls.crt``, ``tls.key``) or a self-signed one generated at start
(:mod:`pilothouse.epp.tls`; the served one is :attr:`EppServer.certificate`). Health and
metrics stay plaintext, as in the reference picker: kubelet gRPC probes and Prometheus
scrapes cannot present or verify a picker certificate.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import aiohttp
import grpc
from aiohttp import web
from envoy.service.ext_proc.v3 import external_processor_pb2_grpc as pb_grpc
from grpc_health.v1 import health_pb2_grpc

from pilothouse.clock import Clock, SystemClock
from pilothouse.config.epp import EppPolicy
from pilothouse.endpoints.discovery import EndpointSource
from pilothouse.endpoints.kv_subscriber import KVEventSubscriber
from pilothouse.endpoints.monitor import EndpointMonitor
from pilothouse.endpoints.pool import EndpointPool
from pilothouse.endpoints.prompt_tokens import PromptTokenizerProducer, pool_engines
from pilothouse.endpoints.tokenizers import ModelTokenizers
from pilothouse.epp.health import EppHealth
from pilothouse.epp.metrics import EppMetrics, start_metrics_server
from pilothouse.epp.processor import EppProtocolError, Exchange, PickerContext
from pilothouse.epp.protocol import ProcessingRequest, ProcessingResponse
from pilothouse.epp.tls import CertificatePair, load_pair, self_signed
from pilothouse.governance.service import Governance, start_governance
from pilothouse.routing import RoutingPipeline, TrafficSplitter
from pilothouse.scheduling.scheduler import Scheduler
from pilothouse.scheduling.types import Endpoint
from pilothouse.telemetry import require_sdk

log = logging.getLogger("pilothouse.epp")

DEFAULT_POOL_KEY = "pool"


@dataclass(frozen=True, slots=True)
class EppSettings:
    """Where the picker listens and how it treats the pool."""

    host: str = "127.0.0.1"
    port: int = 9002
    health_port: int = 9003
    metrics_port: int = 9090
    pool_key: str = DEFAULT_POOL_KEY
    max_body_bytes: int = 10 * 1024 * 1024
    probe_interval_s: float = 0.5
    probe_timeout_s: float = 2.0
    grace_s: float = 5.0
    policy: EppPolicy = field(default_factory=EppPolicy)
    """Flow control, holding, traffic splits and fallback endpoints (``--config``)."""
    secure_serving: bool = True  # ext_proc over TLS (health and metrics stay plaintext)
    cert_path: Path | None = None  # holds tls.crt and tls.key; None: self-signed at start
    grpc_options: tuple[tuple[str, Any], ...] = field(
        default=(("grpc.max_receive_message_length", 16 * 1024 * 1024),)
    )


class ExtProcService(pb_grpc.ExternalProcessorServicer):  # type: ignore[misc]
    """``envoy.service.ext_proc.v3.ExternalProcessor``: one :class:`Exchange` per stream."""

    def __init__(self, ctx: PickerContext) -> None:
        self._ctx = ctx

    async def Process(  # noqa: N802 - the gRPC method name
        self, request_iterator: AsyncIterator[ProcessingRequest], context: Any
    ) -> AsyncIterator[ProcessingResponse]:
        exchange = Exchange(self._ctx)
        self._ctx.metrics.streams.inc()
        try:
            async for message in request_iterator:
                try:
                    responses = await exchange.handle(message)
                except EppProtocolError as exc:
                    await context.abort(grpc.StatusCode.FAILED_PRECONDITION, str(exc))
                for response in responses:
                    yield response
                if exchange.done:
                    return
        finally:
            exchange.close()  # also on cancel: Envoy reset the stream, the client went away
            self._ctx.metrics.streams.dec()


def _pipeline(
    settings: EppSettings,
    pool: EndpointPool,
    scheduler: Scheduler,
    clock: Clock,
    metrics: EppMetrics,
) -> RoutingPipeline:
    """The shared request pipeline over the picker's one pool key."""
    policy = settings.policy
    pipeline = RoutingPipeline(
        pool,
        scheduler,
        clock,
        flow=policy.flow_control,
        hold=policy.hold,
        traffic=TrafficSplitter(policy.traffic),
        pool_key=settings.pool_key,
        on_decision=metrics.scheduling.observe,
        trust_priority_header=policy.trust_priority_header,
    )
    if policy.hold.enabled:  # the pool scales itself (HPA, KEDA): holding only waits
        pipeline.hold_for([settings.pool_key], lambda model: None)
    return pipeline


def _grpc_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class EppServer:
    """Owns every listener and background task of one picker; ``async with`` runs it."""

    def __init__(
        self,
        settings: EppSettings,
        source: EndpointSource,
        scheduler: Scheduler,
        *,
        clock: Clock | None = None,
        kv_events: KVEventSubscriber | None = None,
        tokenize: bool = False,
    ) -> None:
        """``tokenize``: tokenize prompts before scheduling, in a worker (the prompt-token
        producer), for a ``precise-prefix`` scorer fed by ``kv_events``."""
        if settings.policy.tracing is not None:
            require_sdk()
        self.settings = settings
        self.pool = EndpointPool()
        self.metrics = EppMetrics(self.pool)
        self.health = EppHealth()
        self._source = source
        self._clock = clock or SystemClock()
        self.pipeline = _pipeline(settings, self.pool, scheduler, self._clock, self.metrics)
        if hasattr(source, "on_objectives"):  # Kubernetes: the pool's InferenceObjectives
            source.on_objectives = self._on_objectives
        self._producer: PromptTokenizerProducer | None = None
        if tokenize:
            key = settings.pool_key
            engines = pool_engines(lambda _model: self.pool.candidates(key))
            self._producer = PromptTokenizerProducer(ModelTokenizers({}), engines)
            self.pipeline.preparer = self._producer
        self._context = PickerContext(
            self.pipeline,
            self.pool,
            self.metrics,
            settings.pool_key,
            settings.max_body_bytes,
            tuple(settings.policy.fallback_endpoints),
            settings.policy.forward_priority,
        )
        self._synced = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._grpc: list[grpc.aio.Server] = []
        self._metrics_runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self._monitor: EndpointMonitor | None = None
        self._kv_events = kv_events  # follows the pool's endpoints while running
        self.port = settings.port
        self.health_port = settings.health_port
        self.metrics_port = settings.metrics_port
        self.certificate: CertificatePair | None = None  # what ext_proc serves, once started
        self._governance: Governance | None = None

    async def start(self) -> None:
        s = self.settings
        if s.policy.tracing is not None and self._context.tracing is None:
            from pilothouse.telemetry.provider import start_tracing  # the otel extra

            tracing = start_tracing(s.policy.tracing, "epp")
            self._context = dataclasses.replace(self._context, tracing=tracing)
        if s.policy.governance is not None:
            self._governance = await start_governance(
                s.policy.governance, f"epp-{s.port}", self.metrics.registry
            )
            self.pipeline.governor = self._governance.governor
        self._session = aiohttp.ClientSession()
        self._monitor = EndpointMonitor(
            self.pool,
            self._session,
            self._clock,
            interval_s=s.probe_interval_s,
            probe_timeout_s=s.probe_timeout_s,
        )
        await self.health.start()
        self.certificate = self._certificate()
        self.port = await self._serve_grpc(s.port, self._add_ext_proc, self.certificate)
        self.health_port = await self._serve_grpc(s.health_port, self._add_health)
        self._metrics_runner = await start_metrics_server(self.metrics, s.host, s.metrics_port)
        self.metrics_port = int(self._metrics_runner.addresses[0][1])
        self._spawn(self._discover(), "epp-discovery")
        self._spawn(self._become_ready(), "epp-readiness")
        if self._kv_events is not None:
            self._kv_events.watch(self.pool.endpoints, s.probe_interval_s)

    async def stop(self) -> None:
        self.pipeline.waiting.close()
        if self._producer is not None:
            self._producer.close()
        await self.health.shutdown()
        await asyncio.gather(*(server.stop(self.settings.grace_s) for server in self._grpc))
        self._grpc.clear()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._monitor is not None:
            await self._monitor.stop()
        if self._kv_events is not None:
            await self._kv_events.close()
        if self._metrics_runner is not None:
            await self._metrics_runner.cleanup()
            self._metrics_runner = None
        if self._session is not None:
            await self._session.close()
            self._session = None
        if self._governance is not None:
            await self.pipeline.drain_settling()
            await self._governance.aclose()
            self.pipeline.governor = self._governance = None
        if self._context.tracing is not None:
            await self._context.tracing.aclose()  # exports what is still queued
            self._context = dataclasses.replace(self._context, tracing=None)

    async def wait_ready(self, timeout_s: float = 10.0) -> None:
        """Until discovery reported and the first probe round ran (readiness SERVING)."""
        async with asyncio.timeout(timeout_s):
            while not self.health.ready:  # noqa: ASYNC110 - readiness is a flag
                await asyncio.sleep(0.01)

    async def __aenter__(self) -> EppServer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop()

    def _certificate(self) -> CertificatePair | None:
        s = self.settings
        if not s.secure_serving:
            return None
        return load_pair(s.cert_path) if s.cert_path is not None else self_signed([s.host])

    async def _serve_grpc(
        self, port: int, add: Any, certificate: CertificatePair | None = None
    ) -> int:
        server = grpc.aio.server(options=list(self.settings.grpc_options))
        add(server)
        address = _grpc_address(self.settings.host, port)
        if certificate is None:
            bound = server.add_insecure_port(address)
        else:
            pair = ((certificate.key_pem, certificate.cert_pem),)
            bound = server.add_secure_port(address, grpc.ssl_server_credentials(pair))
        if bound == 0:
            raise OSError(f"cannot bind gRPC port {self.settings.host}:{port}")
        await server.start()
        self._grpc.append(server)
        return int(bound)

    def _add_ext_proc(self, server: grpc.aio.Server) -> None:
        pb_grpc.add_ExternalProcessorServicer_to_server(ExtProcService(self._context), server)

    def _add_health(self, server: grpc.aio.Server) -> None:
        health_pb2_grpc.add_HealthServicer_to_server(self.health.servicer, server)

    def _spawn(self, coro: Any, name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _discover(self) -> None:
        try:
            await self._source.run(self._on_endpoints)
        except Exception:
            log.exception("endpoint discovery stopped; the picker is no longer ready")
            await self.health.set_ready(False)

    def _on_endpoints(self, endpoints: Sequence[Endpoint]) -> None:
        """Every endpoint of the pool serves every request: one pool key for all of them."""
        key = self.settings.pool_key
        self.pool.sync([e if e.model == key else e.evolve(model=key) for e in endpoints])
        log.info("pool has %d endpoint(s)", len(endpoints))
        if self._synced.is_set() and self._monitor is not None:
            self._spawn(self._monitor.tick(), "epp-probe-new")  # probe newcomers now
        self._synced.set()

    def _on_objectives(self, objectives: Mapping[str, int]) -> None:
        """The pool's InferenceObjectives changed: priorities by objective name, over the
        ``--config`` ones."""
        base = self.settings.policy.flow_control.objectives
        self.pipeline.objectives = {**base, **objectives}
        log.info("objectives: %s", ", ".join(f"{k}={v}" for k, v in sorted(objectives.items())))

    async def _become_ready(self) -> None:
        await self._synced.wait()
        assert self._monitor is not None
        await self._monitor.tick()
        self._monitor.start()
        await self.health.set_ready(True)
        log.info("the picker is ready")
