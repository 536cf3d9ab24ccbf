"""Loading LoRA adapters on replicas, and learning which adapters each replica holds.

The bookkeeping (declared adapters, who holds what, where a request may go) is the routing
layer's :class:`~pilothouse.routing.adapters.AdapterRegistry`; this module does the I/O
around it: vLLM's ``POST /v1/load_lora_adapter`` on demand (one load per replica and
adapter, however many requests wait for it) and the :class:`AdapterWatcher` that reads
every replica's ``GET /v1/models``.
"""

from __future__ import annotations

import asyncio
import logging
from functools import partial

import aiohttp
import orjson

from pilothouse.endpoints.pool import EndpointPool
from pilothouse.engines.kinds.vllm import VLLM_LORA
from pilothouse.engines.registry import lora_support
from pilothouse.errors import UpstreamError
from pilothouse.periodic import PeriodicTask
from pilothouse.routing.adapters import AdapterRegistry, DeclaredAdapter
from pilothouse.scheduling.types import Endpoint

log = logging.getLogger("pilothouse.adapters")

_ALREADY_LOADED = "already been loaded"


class AdapterLoader:
    """Loads declared adapters on replicas, one load per replica and adapter at a time."""

    def __init__(self, registry: AdapterRegistry) -> None:
        self._registry = registry
        self._loading: dict[tuple[str, str], asyncio.Future[None]] = {}

    async def ensure_loaded(
        self, session: aiohttp.ClientSession, endpoint: Endpoint, adapter: DeclaredAdapter
    ) -> None:
        """Load ``adapter`` on ``endpoint`` unless it holds it; concurrent callers share one
        load. Raises :class:`UpstreamError` when the replica refuses."""
        if self._registry.loaded(endpoint.name, adapter.name):
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
        self._registry.add(endpoint, adapter.name)


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
