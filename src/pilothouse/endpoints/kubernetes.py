"""Kubernetes discovery: the Ready pods an InferencePool selects, as endpoints.

:class:`InferencePoolSource` watches one ``InferencePool``
(``inference.networking.k8s.io/v1``) and the Pods of its namespace, and reports one
:class:`~pilothouse.scheduling.types.Endpoint` per Ready, non-terminating pod and target port,
the way the Gateway API Inference Extension's endpoint picker does: name
``<pod>-rank-<i>``, address ``<podIP>:<targetPorts[i].number>``, engine from the pod label
``llm-d.ai/engine-type`` (default ``vllm``; ``llamacpp`` pods are probed on ``/v1/models``
with no metrics scrape; a value pilothouse has no adapter for is treated as ``openai``, the
same without metrics), labels copied from the pod. The pod annotation
``llm-d.ai/active-ports`` (or the older ``inference.networking.k8s.io/active-ports``), when
present, narrows the target ports a pod serves.

Why the official *synchronous* ``kubernetes`` client, each watch in a worker thread: it is the
long-stable client that tracks the API (the asyncio flavours are either a separate community
port or, inside the official package, only a few releases old); discovery traffic is a handful
of events a minute, so two threads cost nothing; and a thread is stopped promptly by shutting
down the socket of its live response, which unblocks the read. Objects are kept as the raw
JSON the API server sends, so Pods and the InferencePool custom resource are handled alike
and no generated model class sits between the wire and this module.

Each watch is a small reflector: list (take the list's ``resourceVersion``), then watch from
it with bookmarks; when the server ends the stream or the connection drops, watch again from
the last ``resourceVersion`` seen; on ``410 Gone`` (an ``ERROR`` event with code 410, or an
HTTP 410) list again. Pods are watched namespace-wide and filtered here by the pool's
``selector.matchLabels``, so a selector change needs no new watch.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from pilothouse.endpoints.discovery import EndpointSink
from pilothouse.endpoints.kube_pods import (
    Obj,
    pool_endpoints,
)
from pilothouse.errors import PilothouseError
from pilothouse.scheduling.types import Endpoint

try:
    import urllib3
    from kubernetes import client as k8s_client
    from kubernetes import config as k8s_config
    from kubernetes.client.exceptions import ApiException
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise ImportError(
        "Kubernetes discovery needs the 'kubernetes' package: pip install 'pilothouse[k8s]'"
    ) from exc

log = logging.getLogger(__name__)

POOL_GROUP = "inference.networking.k8s.io"
POOL_VERSION = "v1"
POOL_PLURAL = "inferencepools"
OBJECTIVE_GROUP = "inference.networking.x-k8s.io"
OBJECTIVE_VERSION = "v1alpha2"
OBJECTIVE_PLURAL = "inferenceobjectives"
HTTP_GONE = 410

Snapshot = Mapping[str, Obj]  # name → object, the whole current set of one collection
ObjectivesSink = Callable[[Mapping[str, int]], None]


def pool_objectives(pool_name: str, objectives: Iterable[Obj]) -> dict[str, int]:
    """Objective name → priority for the InferenceObjectives that reference ``pool_name``
    (``spec.poolRef.name``); one without a priority counts as 0, as the reference picker's."""
    found: dict[str, int] = {}
    for obj in objectives:
        spec = obj.get("spec") or {}
        if (spec.get("poolRef") or {}).get("name") != pool_name:
            continue
        priority = spec.get("priority")
        found[str(obj["metadata"]["name"])] = priority if isinstance(priority, int) else 0
    return found


@dataclass(frozen=True, slots=True)
class WatchSettings:
    """Timeouts and retry pacing of the list/watch loops."""

    watch_timeout_s: int = 290  # server-side timeoutSeconds of one watch request
    request_timeout_s: float = 30.0  # connect timeout, and read timeout of list calls
    backoff_initial_s: float = 0.2
    backoff_max_s: float = 10.0
    min_watch_s: float = 1.0  # a watch shorter than this counts as a failure for backoff
    join_timeout_s: float = 10.0  # how long stopping waits for the worker threads


# --------------------------------------------------------------------------- pure selection


class _Expired(PilothouseError):
    """The watch's resourceVersion is too old (410 Gone): list again."""


def _lines(resp: Any) -> Iterator[bytes]:
    """Newline-delimited JSON lines of a chunked watch response, as they arrive."""
    buffer = b""
    for chunk in resp.stream(amt=None, decode_content=False):
        buffer += chunk
        *complete, buffer = buffer.split(b"\n")
        yield from (line for line in complete if line.strip())


class _Reflector:
    """List, then watch, one collection in a worker thread; publish the whole set on change."""

    def __init__(
        self,
        name: str,
        list_fn: Callable[..., Any],
        publish: Callable[[Snapshot], None],
        settings: WatchSettings,
    ) -> None:
        self.name = name
        self._list_fn = list_fn
        self._publish = publish
        self._settings = settings
        self._items: dict[str, Obj] = {}
        self._resource_version: str | None = None  # where the next watch resumes; None: list
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._resp: Any = None

    def stop(self) -> None:
        """Ask the loop to end and unblock a pending read."""
        self._stop.set()
        with self._lock:
            resp = self._resp
        if resp is not None:
            _shutdown(resp)

    def run(self) -> None:
        """The thread body: list/watch rounds until :meth:`stop`, backing off on failures."""
        backoff = self._settings.backoff_initial_s
        while not self._stop.is_set():
            if self._round():
                backoff = self._settings.backoff_initial_s
                continue
            self._stop.wait(backoff)
            backoff = min(backoff * 2, self._settings.backoff_max_s)

    def _round(self) -> bool:
        """List if needed, then watch until the stream ends; ``False`` asks for a backoff."""
        started = time.monotonic()
        try:
            if self._resource_version is None:
                self._list()
            self._watch()
        except _Expired:
            log.info("%s: watch expired (410 Gone), listing again", self.name)
            self._resource_version = None
            return True
        except ApiException as exc:
            if exc.status != 0:  # 0: the connection failed, the resume point is still good
                self._resource_version = None
            if exc.status == HTTP_GONE:
                return True
            log.warning("%s: API error %s %s; retrying", self.name, exc.status, exc.reason)
            return False
        except (urllib3.exceptions.HTTPError, OSError, ValueError) as exc:
            if not self._stop.is_set():
                log.info("%s: watch connection lost (%s); resuming", self.name, exc)
            return False
        return time.monotonic() - started >= self._settings.min_watch_s

    def _call(self, **kwargs: Any) -> Any:
        resp = self._list_fn(_preload_content=False, **kwargs)
        with self._lock:
            self._resp = resp
        if self._stop.is_set():  # stop() ran before the response was registered
            _shutdown(resp)
        return resp

    def _release(self, resp: Any, *, close: bool) -> None:
        with self._lock:
            self._resp = None
        if close:  # a stream left unread must not go back to the connection pool
            resp.close()
        resp.release_conn()

    def _list(self) -> None:
        timeout = self._settings.request_timeout_s
        resp = self._call(_request_timeout=(timeout, timeout))
        try:
            body = json.loads(resp.data)
        finally:
            self._release(resp, close=False)
        self._items = {str(o["metadata"]["name"]): o for o in body.get("items") or ()}
        self._publish(dict(self._items))
        self._resource_version = str(body["metadata"]["resourceVersion"])

    def _watch(self) -> None:
        s = self._settings
        resp = self._call(
            watch=True,
            resource_version=self._resource_version,
            allow_watch_bookmarks=True,
            timeout_seconds=s.watch_timeout_s,
            _request_timeout=(s.request_timeout_s, s.watch_timeout_s + s.request_timeout_s),
        )
        try:
            for line in _lines(resp):
                self._apply(json.loads(line))
                if self._stop.is_set():
                    break
        finally:
            self._release(resp, close=True)

    def _apply(self, event: Obj) -> None:
        kind, obj = event.get("type"), event.get("object") or {}
        if kind == "ERROR":
            if obj.get("code") == HTTP_GONE:
                raise _Expired(obj.get("message", ""))
            raise ApiException(status=obj.get("code", 500), reason=obj.get("message", ""))
        metadata = obj.get("metadata") or {}
        if kind in ("ADDED", "MODIFIED"):
            self._items[str(metadata["name"])] = obj
        elif kind == "DELETED":
            self._items.pop(str(metadata["name"]), None)
        if kind != "BOOKMARK":
            self._publish(dict(self._items))
        if metadata.get("resourceVersion"):
            self._resource_version = str(metadata["resourceVersion"])


def _shutdown(resp: Any) -> None:
    """Unblock a thread reading ``resp`` (urllib3 ≥ 2.3 has ``shutdown``)."""
    shutdown = getattr(resp, "shutdown", None)
    with contextlib.suppress(OSError):  # already closed by the other side
        shutdown() if shutdown is not None else resp.close()


# --------------------------------------------------------------------------- the source


class InferencePoolSource:
    """An :class:`~pilothouse.endpoints.discovery.EndpointSource` for one InferencePool.

    ``api_client`` is a ``kubernetes.client.ApiClient``; without one the in-cluster config is
    used, else the local kubeconfig. A client passed in is not closed here.
    """

    def __init__(
        self,
        pool_name: str,
        namespace: str,
        *,
        api_client: Any = None,
        settings: WatchSettings | None = None,
    ) -> None:
        self.pool_name = pool_name
        self.namespace = namespace
        self._api_client = api_client
        self._settings = settings or WatchSettings()
        self.on_objectives: ObjectivesSink | None = None
        """Told the pool's InferenceObjectives (name → priority) whenever they change; set
        it before :meth:`run` to watch them (the endpoint picker maps the
        ``x-gateway-inference-objective`` header through it)."""

    async def run(self, sink: EndpointSink) -> None:
        """Report the set once both collections are listed, then every change, until cancelled."""
        loop = asyncio.get_running_loop()
        updates: asyncio.Queue[tuple[str, Snapshot]] = asyncio.Queue()
        api_client = self._api_client or await asyncio.to_thread(client_from_environment)
        reflectors = self._reflectors(api_client, loop, updates)
        threads = [
            threading.Thread(target=r.run, name=f"pilothouse-k8s-{r.name}", daemon=True)
            for r in reflectors
        ]
        try:
            for thread in threads:
                thread.start()
            await self._report(updates, sink)
        finally:
            for reflector in reflectors:
                reflector.stop()
            await asyncio.to_thread(_join, threads, self._settings.join_timeout_s)
            if self._api_client is None:
                api_client.close()

    def _reflectors(
        self, api_client: Any, loop: asyncio.AbstractEventLoop, updates: asyncio.Queue[Any]
    ) -> list[_Reflector]:
        def publisher(kind: str) -> Callable[[Snapshot], None]:
            def publish(items: Snapshot) -> None:
                with contextlib.suppress(RuntimeError):  # loop closed: nobody listens
                    loop.call_soon_threadsafe(updates.put_nowait, (kind, items))

            return publish

        custom = k8s_client.CustomObjectsApi(api_client)
        core = k8s_client.CoreV1Api(api_client)

        def list_pools(**kwargs: Any) -> Any:
            return custom.list_namespaced_custom_object(
                POOL_GROUP,
                POOL_VERSION,
                self.namespace,
                POOL_PLURAL,
                field_selector=f"metadata.name={self.pool_name}",
                **kwargs,
            )

        def list_pods(**kwargs: Any) -> Any:
            return core.list_namespaced_pod(self.namespace, **kwargs)

        def list_objectives(**kwargs: Any) -> Any:
            return custom.list_namespaced_custom_object(
                OBJECTIVE_GROUP, OBJECTIVE_VERSION, self.namespace, OBJECTIVE_PLURAL, **kwargs
            )

        reflectors = [
            _Reflector(
                f"inferencepool/{self.pool_name}", list_pools, publisher("pool"), self._settings
            ),
            _Reflector(f"pods/{self.namespace}", list_pods, publisher("pods"), self._settings),
        ]
        if self.on_objectives is not None:
            name = f"inferenceobjectives/{self.namespace}"
            reflectors.append(
                _Reflector(name, list_objectives, publisher("objectives"), self._settings)
            )
        return reflectors

    async def _report(
        self, updates: asyncio.Queue[tuple[str, Snapshot]], sink: EndpointSink
    ) -> None:
        latest: dict[str, Snapshot] = {}
        reported: tuple[Endpoint, ...] | None = None
        while True:
            kind, items = await updates.get()
            latest[kind] = items
            while not updates.empty():  # coalesce a burst into one report
                kind, items = updates.get_nowait()
                latest[kind] = items
            objectives = latest.pop("objectives", None)
            if objectives is not None and self.on_objectives is not None:
                self.on_objectives(pool_objectives(self.pool_name, objectives.values()))
            if "pool" not in latest or "pods" not in latest:
                continue
            pool = latest["pool"].get(self.pool_name)
            if pool is None and reported is None:
                log.warning("InferencePool %s/%s not found", self.namespace, self.pool_name)
            endpoints = pool_endpoints(pool, latest["pods"].values())
            if endpoints != reported:
                sink(endpoints)
                reported = endpoints


def client_from_environment() -> Any:
    """An ``ApiClient`` from the in-cluster service account, else from the kubeconfig."""
    configuration = k8s_client.Configuration()
    try:
        k8s_config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    except k8s_config.ConfigException:
        k8s_config.load_kube_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    return k8s_client.ApiClient(configuration)


def _join(threads: Iterable[threading.Thread], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
        if thread.is_alive():
            log.warning("%s did not stop within %.0fs", thread.name, timeout_s)
