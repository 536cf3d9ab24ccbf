"""The gateway's app factory: routes, lifespan (upstream session and endpoint monitor)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import aiohttp
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from pilothouse.clock import Clock, SystemClock
from pilothouse.config.fleet import FleetSpec, GatewaySpec
from pilothouse.config.tracing import TracingSpec
from pilothouse.endpoints.kv_subscriber import KVEventSubscriber, build_kv_scheduler
from pilothouse.endpoints.monitor import EndpointMonitor
from pilothouse.endpoints.pool import EndpointPool
from pilothouse.endpoints.prompt_tokens import EngineKinds, PromptTokenizerProducer
from pilothouse.endpoints.tokenizers import ModelTokenizer, load_tokenizers
from pilothouse.errors import RequestError
from pilothouse.gateway.adapter_admin import adapter_routes
from pilothouse.gateway.adapters import AdapterWatcher
from pilothouse.gateway.asgi import Receive, Scope, Send
from pilothouse.gateway.console import mount_console
from pilothouse.gateway.context import GatewayContext, priority_models
from pilothouse.gateway.governance_admin import governance_routes
from pilothouse.gateway.lag_probe import LoopLagProbe
from pilothouse.gateway.metrics import GatewayMetrics
from pilothouse.gateway.proxy import ProxyEndpoint
from pilothouse.governance.service import start_governance
from pilothouse.openai.errors import error_body, error_from_exception
from pilothouse.openai.messages import MessagesDialect
from pilothouse.openai.requests import Route as OpenAIRoute
from pilothouse.openai.responses import ResponsesDialect
from pilothouse.routing import AdapterRegistry, TrafficSplitter
from pilothouse.scheduling.config import resolve_config
from pilothouse.scheduling.scheduler import Scheduler
from pilothouse.telemetry import require_sdk
from pilothouse.transport.factory import TransportSettings, create_transport

_JSON = "application/json"


def create_app(
    settings: GatewaySpec,
    pool: EndpointPool,
    scheduler: Scheduler,
    *,
    clock: Clock | None = None,
    monitor: bool = True,
    kv_events: KVEventSubscriber | None = None,
    fleet: FleetSpec | None = None,
    preparer: PromptTokenizerProducer | None = None,
    tracing: TracingSpec | None = None,
) -> GatewayApp:
    """Build a gateway; the monitor probes endpoints unless ``monitor`` is False (tests).

    ``kv_events`` (from :func:`build_gateway_scheduler`) follows the pool's endpoints while
    the app runs. ``fleet`` declares LoRA adapters and traffic splits (see
    ``docs/lora.md`` and ``docs/canary.md``); the app follows a new spec through
    :meth:`GatewayContext.adopt`. ``preparer`` (from :func:`build_gateway_scheduler`)
    tokenizes prompts before scheduling; the app closes it when it stops. ``tracing``
    (default: the fleet's) exports a span per request while the app runs.
    """
    if tracing is None and fleet is not None:
        tracing = fleet.tracing
    if tracing is not None:
        require_sdk()
    ctx = GatewayContext(
        settings=settings,
        pool=pool,
        scheduler=scheduler,
        metrics=GatewayMetrics(),
        clock=clock or SystemClock(),
        adapters=AdapterRegistry(fleet),
        traffic=TrafficSplitter(fleet.traffic if fleet is not None else ()),
        preparer=preparer,
        priority_models=priority_models(fleet),
        tracing_spec=tracing,
    )
    proxies = {r.value: ProxyEndpoint(r, ctx) for r in OpenAIRoute}
    for dialect in (ResponsesDialect(), MessagesDialect()):  # served by translation
        proxies[dialect.path] = ProxyEndpoint(OpenAIRoute.CHAT, ctx, dialect)
    routes: list[BaseRoute] = [
        Route(path, proxy, methods=["POST"]) for path, proxy in proxies.items()
    ]
    routes += [
        Route("/v1/models", _models(ctx), methods=["GET"]),
        Route("/health", _health, methods=["GET"]),
        Route("/ready", _ready(ctx), methods=["GET"]),
        Route("/metrics", _metrics(ctx), methods=["GET"]),
        *adapter_routes(ctx),
        *governance_routes(ctx),
        *mount_console(ctx),
    ]
    app = Starlette(
        routes=routes,
        lifespan=_lifespan(ctx, monitor, kv_events, preparer),
        exception_handlers={HTTPException: _http_error},
    )
    app.state.ctx = ctx
    return GatewayApp(app, proxies, ctx)


class GatewayApp:
    """The ASGI entry point: OpenAI POSTs go straight to their proxy endpoint.

    Starlette's router builds a request object and walks its routes for every call; the hot
    routes skip it (a dict lookup on the path), everything else (GETs, lifespan, 404/405)
    goes through Starlette.
    """

    def __init__(self, app: Starlette, proxies: dict[str, ProxyEndpoint], ctx: GatewayContext):
        self.app = app
        self.ctx = ctx
        self._proxies = proxies

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            proxy = self._proxies.get(scope["path"])
            if proxy is not None:
                await proxy(scope, receive, send)
                return
        await self.app(scope, receive, send)


def build_gateway_scheduler(
    settings: GatewaySpec,
    clock: Clock,
    *,
    tokenizer: ModelTokenizer | None = None,
    seed: int | None = None,
    engines: EngineKinds | None = None,
    prepared: bool = False,
) -> tuple[Scheduler, KVEventSubscriber | None, PromptTokenizerProducer | None]:
    """The gateway's scheduler; with ``settings.kv_events``, its KV-event subscriber, and
    with ``engines`` too, the producer that tokenizes prompts before scheduling.

    Without ``tokenizer``, prompts are tokenized with ``settings.tokenizers`` (loaded only
    with ``kv_events``: nothing else reads them) and the simulator's tokenizer. ``engines``
    tells the producer which engine kinds serve a request's model
    (``pool_engines(pool.candidates)``). With ``prepared`` every request is expected to go
    through ``await producer.prepare(request)`` first: the scheduler gets no tokenizer, and
    never tokenizes inside a decision. ``settings.tokenize: inline`` turns both off: no
    producer, the decision tokenizes (the old path, to compare against).
    """
    config = resolve_config(settings.scheduler)
    if settings.tokenize == "inline":
        prepared, engines = False, None
    if tokenizer is None and settings.kv_events:
        tokenizer = load_tokenizers(settings.tokenizers or {}, "gateway.tokenizers")
    scheduler, subscriber = build_kv_scheduler(
        config, clock, kv_events=settings.kv_events, tokenizer=tokenizer, seed=seed,
        inline_tokenizer=not prepared,
    )  # fmt: skip
    producer = None
    if subscriber is not None and tokenizer is not None and engines is not None:
        producer = PromptTokenizerProducer(
            tokenizer,
            engines,
            block_sizes=subscriber.index.block_sizes,
            process=settings.tokenize == "process",
        )
    return scheduler, subscriber, producer


def transport_settings(settings: GatewaySpec) -> TransportSettings:
    """The upstream leg's limits from the gateway's spec."""
    return TransportSettings(
        connect_timeout_s=settings.connect_timeout_s,
        headers_timeout_s=settings.read_timeout_s,
        read_timeout_s=settings.read_timeout_s,
    )


def _lifespan(  # type: ignore[no-untyped-def]
    ctx: GatewayContext,
    monitor: bool,
    kv_events: KVEventSubscriber | None,
    preparer: PromptTokenizerProducer | None,
):
    probe = None
    if ctx.settings.loop_lag_probe_s > 0:
        probe = LoopLagProbe(ctx.metrics.registry, ctx.settings.loop_lag_probe_s)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if probe is not None:
            probe.start()
        connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=60, ttl_dns_cache=300)
        timeout = aiohttp.ClientTimeout(
            total=None,
            sock_connect=ctx.settings.connect_timeout_s,
            sock_read=ctx.settings.read_timeout_s,
        )
        if ctx.tracing_spec is not None and ctx.tracing is None:
            from pilothouse.telemetry.provider import start_tracing  # the otel extra

            ctx.tracing = start_tracing(ctx.tracing_spec, "gateway")
        governance = None
        spec = ctx.settings.governance
        if spec is not None:
            instance = f"gateway-{ctx.settings.port}"
            governance = await start_governance(spec, instance, ctx.metrics.registry)
            ctx.governance = governance
            ctx.pipeline.governor = governance.governor
        async with aiohttp.ClientSession(
            connector=connector, timeout=timeout, auto_decompress=False
        ) as session:
            ctx.session = session
            transport = ctx.transport = create_transport(
                ctx.settings.upstream_client, transport_settings(ctx.settings)
            )
            watcher = EndpointMonitor(
                ctx.pool, session, ctx.clock, interval_s=ctx.settings.probe_interval_s
            )
            adapters = AdapterWatcher(
                ctx.adapters, ctx.pool, session, interval_s=ctx.settings.probe_interval_s
            )
            if monitor:
                await watcher.tick()
                watcher.start()
                await adapters.tick()
                adapters.start()
            if kv_events is not None:
                kv_events.watch(ctx.pool.endpoints, ctx.settings.probe_interval_s)
            if preparer is not None:
                await preparer.start()
            try:
                yield
            finally:
                await watcher.stop()
                await adapters.stop()
                if kv_events is not None:
                    await kv_events.close()
                ctx.pipeline.waiting.close()
                await transport.aclose()
                if preparer is not None:
                    await preparer.aclose()
                if probe is not None:
                    await probe.stop()
                ctx.session = ctx.transport = None
                if governance is not None:
                    await ctx.pipeline.drain_settling()
                    await governance.aclose()
                    ctx.pipeline.governor = ctx.governance = None
                if ctx.tracing is not None:
                    await ctx.tracing.aclose()  # exports what is still queued
                    ctx.tracing = None

    return lifespan


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    kind = "not_found_error" if exc.status_code == 404 else "invalid_request_error"
    message = f"{request.method} {request.url.path}: {exc.detail}"
    return Response(error_body(message, kind), exc.status_code, media_type=_JSON)


def _models(ctx: GatewayContext):  # type: ignore[no-untyped-def]
    async def models(request: Request) -> Response:
        try:
            ctx.check_api_key(request.headers.get("authorization", "").encode() or None)
        except RequestError as exc:
            status, body, _ = error_from_exception(exc)
            return Response(body, status, media_type=_JSON)
        return Response(_dumps({"object": "list", "data": model_list(ctx)}), media_type=_JSON)

    return models


def model_list(ctx: GatewayContext) -> list[dict[str, object]]:
    """Served models, LoRA adapters (``parent``: the base model, as vLLM lists them) and
    public names of traffic splits (``versions``: each version's share)."""

    def card(name: str, **extra: object) -> dict[str, object]:
        return {"id": name, "object": "model", "created": 0, "owned_by": "pilothouse", **extra}

    models = set(ctx.pool.models()) | ctx.pipeline.hold_models()
    data = [card(name) for name in sorted(models)]
    data += [card(name, parent=base) for name, base in sorted(ctx.adapters.names().items())]
    data += [
        card(name, versions=split.shares()) for name, split in sorted(ctx.traffic.splits().items())
    ]
    return data


async def _health(request: Request) -> Response:
    return Response(b'{"status":"ok"}', media_type=_JSON)


def _ready(ctx: GatewayContext):  # type: ignore[no-untyped-def]
    async def ready(request: Request) -> Response:
        waiting = [m for m in ctx.pool.models() if not ctx.pool.candidates(m)]
        if waiting:
            body = _dumps({"status": "not ready", "models_without_ready_replicas": waiting})
            return Response(body, 503, media_type=_JSON)
        return Response(b'{"status":"ready"}', media_type=_JSON)

    return ready


def _metrics(ctx: GatewayContext):  # type: ignore[no-untyped-def]
    async def metrics(request: Request) -> Response:
        return Response(generate_latest(ctx.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return metrics


def _dumps(doc: object) -> bytes:
    import orjson

    return orjson.dumps(doc)
