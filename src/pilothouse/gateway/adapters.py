"""LoRA adapters served as models: which replicas hold which adapter, and loading on demand.

vLLM serves an adapter under its own model name next to its base model. The gateway keeps:

- the adapters the Fleet spec declares (``models[].adapters``: name → base model, source);
- the adapters each replica holds, learned from its ``GET /v1/models`` (entries whose
  ``parent`` is set) on every probe interval, and updated at once when the gateway itself
  loads or unloads one (:class:`AdapterWatcher`, :func:`load_adapter`);
- the adapters a replica's engine reports running or waiting (``vllm:lora_requests_info``,
  already in its metrics snapshot).

A request naming an adapter is scheduled over its base model's replicas
(``SchedulingRequest.model`` = base, ``lora`` = adapter, so ``lora-affinity`` applies) and
narrowed to those that hold it (:meth:`AdapterRegistry.plan`). When none does and the spec
declares the adapter, any ready replica may take it: the gateway loads it there through
vLLM's ``POST /v1/load_lora_adapter`` before forwarding (one load per replica and adapter,
however many requests wait for it).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import partial

import aiohttp
import orjson

from pilothouse.config.fleet import FleetSpec
from pilothouse.endpoints.pool import EndpointPool
from pilothouse.engines.kinds.vllm import VLLM_LORA
from pilothouse.engines.registry import lora_support
from pilothouse.errors import NoEndpointAvailable, UpstreamError
from pilothouse.periodic import PeriodicTask
from pilothouse.scheduling.types import Endpoint

log = logging.getLogger("pilothouse.adapters")

_ALREADY_LOADED = "already been loaded"


@dataclass(frozen=True, slots=True)
class DeclaredAdapter:
    name: str
    base: str
    source: str

    @property
    def path(self) -> str:
        """What vLLM's ``lora_path`` takes: a local path or a Hub id (``hf://`` dropped)."""
        return self.source.removeprefix("hf://")


@dataclass(frozen=True, slots=True)
class AdapterPlan:
    """Where an adapter request may go: ``only`` these addresses, or any, loading first."""

    only: frozenset[str] | None
    load: DeclaredAdapter | None = None


class AdapterRegistry:
    """Declared adapters and the adapters each replica holds (see the module docstring)."""

    def __init__(self, spec: FleetSpec | None = None) -> None:
        self._declared: dict[str, DeclaredAdapter] = {}
        self._held: dict[str, frozenset[str]] = {}  # endpoint name -> adapters
        self._models: dict[str, str] = {}  # endpoint name -> its base model
        self._bases: dict[str, str] = {}  # adapter held somewhere -> base model
        self._loading: dict[tuple[str, str], asyncio.Future[None]] = {}
        if spec is not None:
            self.update(spec)

    def update(self, spec: FleetSpec) -> None:
        """Adopt the adapters of a (new) spec; what replicas hold is kept."""
        self._declared = {
            a.name: DeclaredAdapter(a.name, m.name, a.source)
            for m in spec.models
            for a in m.adapters
        }

    # -- names ---------------------------------------------------------------------------

    def base_of(self, name: str) -> str | None:
        """The base model serving adapter ``name``, or None when no one knows it."""
        declared = self._declared.get(name)
        return declared.base if declared is not None else self._bases.get(name)

    def declared(self, name: str) -> DeclaredAdapter | None:
        return self._declared.get(name)

    def names(self) -> dict[str, str]:
        """Every adapter known (declared or held somewhere) → its base model."""
        names = dict(self._bases)
        names.update({name: a.base for name, a in self._declared.items()})
        return names

    def held(self) -> dict[str, frozenset[str]]:
        """Endpoint name → adapters it holds (as last seen)."""
        return dict(self._held)

    # -- what replicas hold --------------------------------------------------------------

    def set_held(self, endpoint: Endpoint, adapters: Iterable[str]) -> None:
        held = frozenset(adapters)
        if self._held.get(endpoint.name) != held:
            self._held[endpoint.name] = held
            self._models[endpoint.name] = endpoint.model
            self._reindex()

    def add(self, endpoint: Endpoint, adapter: str) -> None:
        self.set_held(endpoint, self._held.get(endpoint.name, frozenset()) | {adapter})

    def discard(self, endpoint: Endpoint, adapter: str) -> None:
        self.set_held(endpoint, self._held.get(endpoint.name, frozenset()) - {adapter})

    def forget_missing(self, names: Iterable[str]) -> None:
        """Drop what endpoints that left the pool held."""
        keep = set(names)
        gone = [n for n in self._held if n not in keep]
        for name in gone:
            del self._held[name]
            self._models.pop(name, None)
        if gone:
            self._reindex()

    def _reindex(self) -> None:
        self._bases = {
            adapter: self._models[endpoint]
            for endpoint, held in self._held.items()
            for adapter in held
        }

    def holds(self, endpoint: Endpoint, adapter: str) -> bool:
        metrics = endpoint.metrics
        return (
            adapter in self._held.get(endpoint.name, ())
            or adapter in metrics.running_loras
            or adapter in metrics.waiting_loras
        )

    def plan(self, adapter: str, candidates: Sequence[Endpoint]) -> AdapterPlan:
        """Narrow ``candidates`` (ready replicas of the base) for a request on ``adapter``."""
        holders = frozenset(e.address for e in candidates if self.holds(e, adapter))
        if holders:
            return AdapterPlan(only=holders)
        declared = self._declared.get(adapter)
        loadable = [e for e in candidates if lora_support(e.engine) is not None]
        if declared is not None and loadable:
            return AdapterPlan(only=frozenset(e.address for e in loadable), load=declared)
        raise NoEndpointAvailable(f"no ready replica serves adapter '{adapter}'")

    # -- loading -------------------------------------------------------------------------

    async def ensure_loaded(
        self, session: aiohttp.ClientSession, endpoint: Endpoint, adapter: DeclaredAdapter
    ) -> None:
        """Load ``adapter`` on ``endpoint`` unless it holds it; concurrent callers share one
        load. Raises :class:`UpstreamError` when the replica refuses."""
        if adapter.name in self._held.get(endpoint.name, ()):
            return
        key = (endpoint.name, adapter.name)
        pending = self._loading.get(key)
        if pending is None:
            pending = asyncio.ensure_future(self._load(session, endpoint, adapter))
            self._loading[key] = pending
            pending.add_done_callback(partial(self._loaded, key))
        await asyncio.shield(pending)

    def _loaded(self, key: tuple[str, str], done: asyncio.Future[None]) -> None:
        self._loading.pop(key, None)
        if not done.cancelled():
            done.exception()  # retrieved: waiters that went away leave no warning behind

    async def _load(
        self, session: aiohttp.ClientSession, endpoint: Endpoint, adapter: DeclaredAdapter
    ) -> None:
        status, text = await load_adapter(session, endpoint.address, adapter.name, adapter.path)
        if status != 200 and not (status == 400 and _ALREADY_LOADED in text):
            raise UpstreamError(
                f"replica {endpoint.name} could not load adapter '{adapter.name}': "
                f"{status} {text[:200]}"
            )
        log.info("loaded adapter %s on %s", adapter.name, endpoint.name)
        self.add(endpoint, adapter.name)


async def load_adapter(
    session: aiohttp.ClientSession, address: str, name: str, path: str
) -> tuple[int, str]:
    """vLLM's ``POST /v1/load_lora_adapter`` on one replica: (status, body text)."""
    body = orjson.dumps({"lora_name": name, "lora_path": path})
    return await _post(session, f"http://{address}{VLLM_LORA.load_path}", body)


async def unload_adapter(
    session: aiohttp.ClientSession, address: str, name: str
) -> tuple[int, str]:
    """vLLM's ``POST /v1/unload_lora_adapter`` on one replica: (status, body text)."""
    body = orjson.dumps({"lora_name": name})
    return await _post(session, f"http://{address}{VLLM_LORA.unload_path}", body)


async def _post(session: aiohttp.ClientSession, url: str, body: bytes) -> tuple[int, str]:
    try:
        async with session.post(
            url, data=body, headers={"Content-Type": "application/json"}
        ) as resp:
            return resp.status, await resp.text()
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise UpstreamError(f"{url} failed: {type(exc).__name__}") from exc


def served_adapters(document: object, base: str) -> frozenset[str]:
    """Adapter names in a ``/v1/models`` answer: entries with a ``parent`` (vLLM sets it to
    the base model for every LoRA adapter, and to null for the base itself)."""
    if not isinstance(document, dict) or not isinstance(document.get("data"), list):
        raise ValueError("not a model list")
    return frozenset(
        entry["id"]
        for entry in document["data"]
        if isinstance(entry, dict)
        and isinstance(entry.get("id"), str)
        and isinstance(entry.get("parent"), str)
        and entry["id"] != base
    )


def _watched(endpoint: Endpoint) -> bool:
    """Every ready ``vllm``/``sim`` replica, not only those whose metrics show LoRA enabled:
    vLLM adds its first ``vllm:lora_requests_info`` sample only once a request has run, so an
    adapter loaded on a replica that has served nothing yet would stay unknown. A replica
    without LoRA lists no entry with a ``parent``: it holds nothing."""
    return endpoint.ready and lora_support(endpoint.engine) is not None


class AdapterWatcher(PeriodicTask):
    """Reads the ``/v1/models`` of every ready ``vllm``/``sim`` replica, on an interval."""

    def __init__(
        self,
        registry: AdapterRegistry,
        pool: EndpointPool,
        session: aiohttp.ClientSession,
        *,
        interval_s: float,
        timeout_s: float = 2.0,
    ) -> None:
        super().__init__(interval_s, "adapter-watcher")
        self._registry = registry
        self._pool = pool
        self._session = session
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)

    async def tick(self) -> None:
        endpoints = self._pool.endpoints()
        self._registry.forget_missing(e.name for e in endpoints)
        watched = [e for e in endpoints if _watched(e)]
        await asyncio.gather(*(self._read(e) for e in watched))

    async def _read(self, endpoint: Endpoint) -> None:
        url = f"http://{endpoint.address}/v1/models"
        try:
            async with self._session.get(url, timeout=self._timeout) as resp:
                if resp.status != 200:
                    return
                document = orjson.loads(await resp.read())
            self._registry.set_held(endpoint, served_adapters(document, endpoint.model))
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            log.debug("could not read the adapters of %s: %r", endpoint.name, exc)
