"""``pilothouse bench live``: the benchmark workloads sent over HTTP to a running stack.

A *target* is any OpenAI-compatible base URL (pilothouse's gateway, another router, one
engine) plus, optionally, the ``/metrics`` URLs of the engines behind it. For each level
(an open-loop QPS or a closed-loop concurrency, :mod:`.live_dispatch`) the workload's
request stream is sent as streamed requests (:mod:`.live_client`), and the outcomes become
the same :class:`~pilothouse.sim.cluster_types.RunMetrics` that ``bench sim`` reports
(:mod:`.live_stats`), cache hit rate and queue ratio coming from the engines' metrics
(:mod:`.live_metrics`).

Times: with ``time_scale`` X (a fleet of ``engine sim --time-scale X`` replicas) the
workload's arrival and think times are divided by X before they are waited for, and every
measured duration is multiplied by X, so QPS levels and results are in simulated seconds and
compare directly with ``bench sim`` on the same preset. Real engines use X = 1.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import aiohttp
import orjson

from pilothouse.bench.live.client import API_PATHS, RequestOutcome, run_request
from pilothouse.bench.live.dispatch import Dispatcher, RequestStream, Sender
from pilothouse.bench.live.metrics import EngineCounters, QueueSampler, cache_hit_rate, scrape_all
from pilothouse.bench.live.stats import LiveRecorder
from pilothouse.bench.report import PolicyRun
from pilothouse.bench.workloads import ArrivalSpec, Workload
from pilothouse.errors import ConfigError
from pilothouse.sim.cluster_types import QueueTrace, RunResult, SimRequest

Progress = Callable[[int], None]
_PROBE_TIMEOUT = aiohttp.ClientTimeout(total=10.0)


@dataclass(frozen=True, slots=True)
class Level:
    """One point of a sweep: ``qps`` (open loop) or ``concurrency`` (closed loop)."""

    mode: str
    value: float

    def __post_init__(self) -> None:
        if self.mode not in ("qps", "concurrency"):
            raise ValueError(f"unknown level mode {self.mode!r}")
        if self.value <= 0:
            raise ValueError(f"{self.mode} must be > 0")

    @property
    def label(self) -> str:
        return f"{self.value:g} QPS" if self.mode == "qps" else f"concurrency {self.value:g}"


@dataclass(frozen=True, slots=True)
class LiveTarget:
    """Where requests go, and where the engines behind it publish their metrics."""

    name: str
    url: str
    metrics_urls: tuple[str, ...] = ()
    reset_urls: tuple[str, ...] = ()  # POSTed before each level (prefix caches start cold)


@dataclass(frozen=True, slots=True)
class LiveSettings:
    """How every level is run."""

    requests: int = 200
    model: str | None = None  # None: the first model of GET /v1/models
    api: str = "completions"
    time_scale: float = 1.0
    arrivals: ArrivalSpec = field(default_factory=ArrivalSpec)
    timeout_s: float = 600.0
    sample_interval_s: float = 0.5
    connections: int = 1024

    def __post_init__(self) -> None:
        if self.api not in API_PATHS:
            raise ConfigError(f"unknown API {self.api!r} (known: chat, completions)", "api")
        if self.time_scale <= 0 or self.requests < 1 or self.timeout_s <= 0:
            raise ConfigError("time_scale, requests and timeout must be > 0")


@dataclass(frozen=True, slots=True)
class LiveRun:
    """One measured level of one target, with what could not be measured."""

    run: PolicyRun
    level: Level
    notes: tuple[str, ...] = ()
    first_error: str | None = None


def base_url(url: str) -> str:
    """``http://host:port`` from a URL that may end in ``/`` or ``/v1``."""
    return url.rstrip("/").removesuffix("/v1").rstrip("/")


async def discover_model(session: aiohttp.ClientSession, url: str) -> str:
    """The first model the target lists on ``GET /v1/models``."""
    try:
        async with session.get(f"{base_url(url)}/v1/models", timeout=_PROBE_TIMEOUT) as resp:
            doc = orjson.loads(await resp.read())
        return str(doc["data"][0]["id"])
    except (aiohttp.ClientError, TimeoutError, ValueError, KeyError, IndexError) as exc:
        raise ConfigError(
            f"cannot list the models of {url} ({type(exc).__name__}); pass --model", "model"
        ) from exc


async def reset_caches(session: aiohttp.ClientSession, urls: Sequence[str]) -> list[str]:
    """POST every reset URL; returns notes for those that refused."""
    notes = []
    for url in urls:
        try:
            async with session.post(url, timeout=_PROBE_TIMEOUT) as resp:
                if resp.status != 200:
                    notes.append(f"{url} answered {resp.status}: prefix cache not reset")
        except (aiohttp.ClientError, TimeoutError) as exc:
            notes.append(f"{url} failed ({type(exc).__name__}): prefix cache not reset")
    return notes


def _requests(workload: Workload, level: Level, settings: LiveSettings) -> list[SimRequest]:
    qps = level.value if level.mode == "qps" else (workload.native_qps() or 1.0)
    return list(workload.requests(qps, settings.requests, settings.arrivals))


async def _dispatch(
    level: Level,
    settings: LiveSettings,
    requests: Sequence[SimRequest],
    send: Sender,
    unsent: Callable[[], None],
    sampler: QueueSampler,
) -> None:
    def all_sent() -> None:
        sampler.counting = False

    stream = RequestStream(requests, settings.time_scale)
    dispatcher = Dispatcher(stream, send, unsent, all_sent)
    if level.mode == "qps":
        await dispatcher.open_loop(time.perf_counter(), settings.time_scale)
    else:
        await dispatcher.closed_loop(int(level.value))


async def run_level(
    session: aiohttp.ClientSession,
    target: LiveTarget,
    settings: LiveSettings,
    workload: Workload,
    level: Level,
    model: str,
    progress: Progress | None = None,
) -> LiveRun:
    """Send one level's requests to ``target`` and measure them."""
    notes = await reset_caches(session, target.reset_urls)
    requests = _requests(workload, level, settings)  # built before the clock starts
    url = base_url(target.url) + API_PATHS[settings.api]
    recorder = LiveRecorder(scale=settings.time_scale)

    async def send(request: SimRequest) -> RequestOutcome:
        outcome = await run_request(session, url, request, model, settings.api)
        recorder.add(outcome)
        if progress is not None:
            progress(1)
        return outcome

    def unsent() -> None:
        recorder.unsent()
        if progress is not None:
            progress(1)

    before = await scrape_all(session, target.metrics_urls)
    sampler = QueueSampler(session, target.metrics_urls, settings.sample_interval_s)
    if target.metrics_urls:
        sampler.start()
    try:
        await _dispatch(level, settings, requests, send, unsent, sampler)
    finally:
        await sampler.stop()
    after = await scrape_all(session, target.metrics_urls)
    return _result(target, settings, level, recorder, sampler, (before, after), notes)


def _result(
    target: LiveTarget,
    settings: LiveSettings,
    level: Level,
    recorder: LiveRecorder,
    sampler: QueueSampler,
    scrapes: tuple[Sequence[EngineCounters | None], Sequence[EngineCounters | None]],
    notes: list[str],
) -> LiveRun:
    rate = cache_hit_rate(*scrapes)
    if rate is None:
        notes.append("cache hit rate not measured (no readable engine metrics): reported as 0")
    ratio: float | None = sampler.worst_ratio if sampler.times else None
    if ratio is None:
        notes.append("max_queue_ratio not measured (no engine metrics sampled): reported as 0")
    metrics = recorder.metrics(rate, ratio)
    if level.mode == "qps":
        value = level.value
    else:  # closed loop: the request rate it achieved
        span = recorder.duration_s()
        value = metrics.completed / span if span > 0 else 0.0
    scale = settings.time_scale
    trace = QueueTrace(
        tuple(t * scale for t in sampler.times), tuple(tuple(q) for q in sampler.queues)
    )
    result = RunResult(metrics, trace, recorder.duration_s(), recorder.done)
    return LiveRun(PolicyRun(target.name, value, result), level, tuple(notes), recorder.first_error)


async def run_target(
    target: LiveTarget,
    settings: LiveSettings,
    workload: Workload,
    levels: Sequence[Level],
    progress: Progress | None = None,
) -> list[LiveRun]:
    """Every level against one target, one after the other."""
    connector = aiohttp.TCPConnector(limit=settings.connections)
    timeout = aiohttp.ClientTimeout(total=settings.timeout_s)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        model = settings.model or await discover_model(session, target.url)
        return [
            await run_level(session, target, settings, workload, level, model, progress)
            for level in levels
        ]
