"""An in-process fake of the Kubernetes HTTP API, on 127.0.0.1.

Enough of ``kube-apiserver`` to test discovery and deployment code with a real Kubernetes
client and no cluster:

- the kinds pilothouse reads or renders (:data:`~pilothouse.testing._kube_discovery.TABLE`:
  Pods, Namespaces, ServiceAccounts, ConfigMaps, Secrets, Services, Deployments, Roles,
  RoleBindings, HPAs, KEDA ScaledObjects, InferencePools, HTTPRoutes, Gateways, and for agents
  NetworkPolicies and Istio's PeerAuthentications and AuthorizationPolicies), with discovery
  documents (``/version``, ``/api/v1``, ``/apis``, ``/apis/<group>/<version>``) so that
  ``kubernetes.dynamic.DynamicClient`` works; :meth:`FakeKubeAPI.uninstall` removes a kind, as
  on a cluster without its CRD (discovery omits it, its URLs answer 404);
- list, get and watch; ``labelSelector`` (equality) and ``fieldSelector``
  (``metadata.name``/``metadata.namespace``); a global ``resourceVersion``; watch streams as
  chunked newline-delimited JSON events (``ADDED``/``MODIFIED``/``DELETED``/``BOOKMARK``/
  ``ERROR``), as the real server sends them;
- writes: server-side apply (``PATCH`` with ``application/apply-patch+yaml``,
  ``fieldManager``, ``force``, ``dryRun=All``; managedFields-lite ownership and 409 conflicts,
  see :mod:`pilothouse.testing._kube_ssa`; a no-op apply keeps the ``resourceVersion``; writes
  into a namespace that does not exist answer 404) and ``DELETE`` (with ``dryRun``).

Test hooks: :meth:`FakeKubeAPI.drop_watches` ends every open watch (abruptly, like a lost
connection, or cleanly, like a server timeout); :meth:`FakeKubeAPI.expire_history` forgets
history so a watch resumed from an older ``resourceVersion`` gets ``410 Gone`` (as an ``ERROR``
event by default, or as an HTTP 410 with ``expire_with_status=True``);
:meth:`FakeKubeAPI.fail` makes a verb on a kind answer an error (403, 422, ...);
:meth:`FakeKubeAPI.set_status` plays a controller (a Deployment becoming available);
:meth:`FakeKubeAPI.write_kubeconfig` points a kubeconfig at the fake; every request is
recorded for assertions. Not modelled: authentication, set-based selectors, other patch types,
defaulting and validation beyond names, and the synthetic ``DELETED`` a real server sends when
an object stops matching a label selector.

    with FakeKubeAPI() as api:
        api.put(kube_objects.pod("p1", ip="10.0.0.5", labels={"app": "m"}))
        client = api.api_client()  # a kubernetes.client.ApiClient pointed at the fake
"""

from __future__ import annotations

import copy
import json
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml

from pilothouse.testing import _kube_ssa
from pilothouse.testing._kube_discovery import BUILTIN_NAMESPACES, BY_KIND, BY_PATH, TABLE, Kind
from pilothouse.testing._kube_http import KINDS, KubeRequestHandler, Request, Selector, status_body
from pilothouse.testing._kube_writes import not_found

Obj = dict[str, Any]


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    """One request the fake served."""

    path: str
    query: Mapping[str, str]
    method: str = "GET"

    @property
    def watch(self) -> bool:
        return self.query.get("watch") in ("true", "1")


@dataclass(frozen=True, slots=True)
class _Event:
    rv: int
    type: str
    prefix: str
    plural: str
    namespace: str
    obj: Obj


class FakeKubeAPI:
    """The fake API server; use as a context manager (or :meth:`start` / :meth:`close`)."""

    def __init__(self, *, expire_with_status: bool = False, max_watch_s: float = 60.0) -> None:
        self.expire_with_status = expire_with_status
        self.max_watch_s = max_watch_s
        self._cond = threading.Condition()
        self._rv = 1000
        self._compacted = 0
        self._generation = 0
        self._abrupt = True
        self._closing = False
        self._objects: dict[tuple[str, str, str, str], Obj] = {}
        self._events: list[_Event] = []
        self._requests: list[RecordedRequest] = []
        self._uninstalled: set[str] = set()
        self._failures: dict[tuple[str, str], tuple[int, str, str]] = {}
        self._uid = 0
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> FakeKubeAPI:
        server = ThreadingHTTPServer(("127.0.0.1", 0), KubeRequestHandler)
        server.block_on_close = True  # server_close() joins every handler thread
        server.api = self  # type: ignore[attr-defined]
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-kube-api"
        )
        self._thread.start()
        return self

    def close(self) -> None:
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join()

    def __enter__(self) -> FakeKubeAPI:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def url(self) -> str:
        assert self._server is not None, "start() the fake first"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def api_client(self) -> Any:
        """A ``kubernetes.client.ApiClient`` pointed at this fake (close it when done)."""
        from kubernetes import client

        return client.ApiClient(client.Configuration(host=self.url))

    # ------------------------------------------------------------------ state changes

    def put(self, obj: Mapping[str, Any], *, notify: bool = True) -> Obj:
        """Create or replace an object (``ADDED`` or ``MODIFIED``); returns the stored copy.

        ``notify=False`` changes it without a watch event, like a change whose history was
        compacted away: pair it with :meth:`expire_history` so resumed watches get 410.
        """
        stored: Obj = json.loads(json.dumps(obj))
        kind = BY_KIND[stored["kind"]]
        meta = stored["metadata"]
        namespace = meta.setdefault("namespace", "default") if kind.namespaced else ""
        key = (kind.prefix, kind.plural, namespace, meta["name"])
        with self._cond:
            event = "MODIFIED" if key in self._objects else "ADDED"
            self._record(event, key, stored, notify=notify)
            self._objects[key] = stored
        return stored

    def delete(
        self, kind: str, name: str, namespace: str = "default", *, notify: bool = True
    ) -> None:
        """Remove an object (``DELETED`` carries its last state)."""
        found = BY_KIND[kind]
        key = (found.prefix, found.plural, namespace if found.namespaced else "", name)
        with self._cond:
            stored = json.loads(json.dumps(self._objects.pop(key)))
            self._record("DELETED", key, stored, notify=notify)

    def bookmark(self) -> int:
        """Send a ``BOOKMARK`` at a new resourceVersion (returned) to watches that allow them."""
        with self._cond:
            self._rv += 1
            for kind, (prefix, plural) in KINDS.items():
                meta = {"resourceVersion": str(self._rv)}
                obj = {"kind": kind, "apiVersion": _api_version(prefix), "metadata": meta}
                self._events.append(_Event(self._rv, "BOOKMARK", prefix, plural, "", obj))
            self._cond.notify_all()
            return self._rv

    def drop_watches(self, *, abrupt: bool = True) -> None:
        """End every open watch: ``abrupt`` cuts the TCP connection mid-stream."""
        with self._cond:
            self._generation += 1
            self._abrupt = abrupt
            self._cond.notify_all()

    def expire_history(self) -> None:
        """Forget all history: watches from any resourceVersion seen so far get 410 Gone."""
        with self._cond:
            self._rv += 1
            self._compacted = self._rv
            self._events = [e for e in self._events if e.rv >= self._compacted]

    def apply(
        self,
        obj: Mapping[str, Any],
        *,
        manager: str,
        force: bool = False,
        dry_run: bool = False,
    ) -> tuple[int, Obj]:
        """Server-side apply ``obj`` as ``manager``: (201 created or 200, the stored object).

        Raises :class:`~pilothouse.testing._kube_ssa.ApplyConflict` on a conflict.
        """
        kind = BY_KIND[obj["kind"]]
        meta = obj["metadata"]
        namespace = (meta.get("namespace") or "default") if kind.namespaced else ""
        key = (kind.prefix, kind.plural, namespace, meta["name"])
        with self._cond:
            current = self._objects.get(key)
            merged = _kube_ssa.apply(current, obj, manager, force=force)
            if current is None:
                self._uid += 1
                merged["metadata"].update(
                    uid=f"fake-uid-{self._uid}", generation=1, creationTimestamp=_now()
                )
                if kind.namespaced:
                    merged["metadata"]["namespace"] = namespace
            elif merged == current:
                return 200, copy.deepcopy(current)
            elif _spec_changed(current, merged):
                merged["metadata"]["generation"] = int(current["metadata"].get("generation", 1)) + 1
            if dry_run:
                merged["metadata"].setdefault("resourceVersion", "")
                return (201 if current is None else 200), merged
            self._record("ADDED" if current is None else "MODIFIED", key, merged)
            self._objects[key] = merged
            return (201 if current is None else 200), copy.deepcopy(merged)

    def set_status(self, kind: str, name: str, namespace: str = "default", **status: Any) -> Obj:
        """Merge ``status`` fields into an object, as its controller would (``MODIFIED``)."""
        found = BY_KIND[kind]
        key = (found.prefix, found.plural, namespace if found.namespaced else "", name)
        with self._cond:
            obj = self._objects[key]
            obj.setdefault("status", {}).update(copy.deepcopy(status))
            self._record("MODIFIED", key, obj)
            return copy.deepcopy(obj)

    def uninstall(self, kind: str) -> None:
        """Stop serving ``kind``, as on a cluster without its CRD (:meth:`install` undoes it)."""
        with self._cond:
            self._uninstalled.add(BY_KIND[kind].kind)

    def install(self, kind: str) -> None:
        with self._cond:
            self._uninstalled.discard(BY_KIND[kind].kind)

    def fail(self, method: str, kind: str, code: int, message: str, reason: str = "") -> None:
        """Answer every ``method`` (``GET``, ``PATCH``, ``DELETE``) on ``kind`` with an error."""
        reason = reason or {403: "Forbidden", 422: "Invalid", 500: "InternalError"}.get(code, "")
        with self._cond:
            self._failures[(method.upper(), BY_KIND[kind].plural)] = (code, reason, message)

    def clear_failures(self) -> None:
        with self._cond:
            self._failures.clear()

    def write_kubeconfig(self, path: Path, *, context: str = "fake", namespace: str = "") -> Path:
        """A kubeconfig whose ``context`` (the current one) points at this fake."""
        ctx: Obj = {"cluster": "fake", "user": "fake"}
        if namespace:
            ctx["namespace"] = namespace
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "fake", "cluster": {"server": self.url}}],
            "users": [{"name": "fake", "user": {"token": "fake-token"}}],
            "contexts": [{"name": context, "context": ctx}],
            "current-context": context,
        }
        path.write_text(yaml.safe_dump(config), encoding="utf-8")
        return path

    # ------------------------------------------------------------------ inspection

    def requests(self) -> list[RecordedRequest]:
        with self._cond:
            return list(self._requests)

    def wait_for_request(
        self, predicate: Callable[[RecordedRequest], bool], *, after: int = 0, timeout: float = 5.0
    ) -> RecordedRequest:
        """The first recorded request from index ``after`` on that matches, waiting for it."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                found = [r for r in self._requests[after:] if predicate(r)]
                if found:
                    return found[0]
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError("no matching request reached the fake API")
                self._cond.wait(min(remaining, 0.1))

    def get(self, kind: str, name: str, namespace: str = "default") -> Obj | None:
        """A copy of a stored object, or ``None``."""
        found = BY_KIND[kind]
        key = (found.prefix, found.plural, namespace if found.namespaced else "", name)
        with self._cond:
            obj = self._objects.get(key)
            return copy.deepcopy(obj) if obj is not None else None

    def names(self, kind: str, namespace: str = "default") -> list[str]:
        """The names of the stored objects of ``kind`` in ``namespace``, sorted."""
        found = BY_KIND[kind]
        ns = namespace if found.namespaced else ""
        with self._cond:
            return sorted(k[3] for k in self._objects if k[:3] == (found.prefix, found.plural, ns))

    def installed(self) -> list[Kind]:
        with self._cond:
            return [k for k in TABLE if k.kind not in self._uninstalled]

    def serves(self, request: Request) -> bool:
        kind = BY_PATH.get((request.prefix, request.plural))
        with self._cond:
            return kind is not None and kind.kind not in self._uninstalled

    @property
    def resource_version(self) -> int:
        with self._cond:
            return self._rv

    # ------------------------------------------------------------------ serving (handler threads)

    def serve(self, request: Request, reply: Callable[[int, Obj], None]) -> None:
        """Answer a list or get request (watches go through :meth:`watch`)."""
        problem = self.failure("GET", request)
        if problem is not None:
            reply(problem["code"], problem)
            return
        kind = BY_PATH[(request.prefix, request.plural)]
        with self._cond:
            if request.name:
                obj = self._objects.get((*request.key, request.name))
                if obj is None:
                    reply(404, not_found(kind, request))
                else:
                    reply(200, obj)
                return
            items = [o for o in self._scan(request) if request.selector.matches(o)]
            reply(
                200,
                {
                    "kind": f"{kind.kind}List",
                    "apiVersion": _api_version(request.prefix),
                    "metadata": {"resourceVersion": str(self._rv)},
                    "items": items,
                },
            )

    def take(self, request: Request, *, dry_run: bool) -> Obj | None:
        """Remove the object a ``DELETE`` names and return it (``dry_run`` keeps it)."""
        assert request.name is not None
        key = (*request.key, request.name)
        with self._cond:
            obj = self._objects.get(key)
            if obj is None:
                return None
            if not dry_run:
                del self._objects[key]
                self._record("DELETED", key, json.loads(json.dumps(obj)))
            return copy.deepcopy(obj)

    def note(self, request: Request, method: str = "GET") -> None:
        with self._cond:
            self._requests.append(RecordedRequest(request.path, dict(request.query), method))
            self._cond.notify_all()

    def watch_start(self, request: Request) -> tuple[int | None, list[Obj], int]:
        """(cursor or None when expired, initial events, generation) for a new watch."""
        rv_param = request.query.get("resourceVersion", "")
        with self._cond:
            if rv_param in ("", "0"):
                objects = [o for o in self._scan(request) if request.selector.matches(o)]
                initial = [{"type": "ADDED", "object": o} for o in objects]
                return self._rv, initial, self._generation
            cursor = int(rv_param)
            if cursor < self._compacted:
                return None, [], self._generation
            return cursor, [], self._generation

    def watch_next(
        self, request: Request, cursor: int, generation: int, deadline: float
    ) -> tuple[list[_Event], str | None]:
        """Events after ``cursor``, waiting until one comes; the reason to stop, if any."""
        bookmarks = request.query.get("allowWatchBookmarks") == "true"
        with self._cond:
            while True:
                pending = [e for e in self._events if e.rv > cursor and self._wants(request, e)]
                pending = [e for e in pending if e.type != "BOOKMARK" or bookmarks]
                if self._closing:
                    return pending, "close"
                if self._generation != generation:
                    return pending, "abrupt" if self._abrupt else "end"
                remaining = deadline - time.monotonic()
                if pending or remaining <= 0:
                    return pending, None if remaining > 0 else "end"
                self._cond.wait(min(remaining, 0.25))

    def generation(self) -> int:
        with self._cond:
            return self._generation

    def expired_status(self, request: Request) -> Obj:
        with self._cond:
            rv = request.query.get("resourceVersion", "")
            message = f"too old resource version: {rv} ({self._compacted})"
        return status_body(410, "Expired", message)

    # ------------------------------------------------------------------ internals (lock held)

    def _record(
        self, kind: str, key: tuple[str, str, str, str], obj: Obj, *, notify: bool = True
    ) -> None:
        self._rv += 1
        obj["metadata"]["resourceVersion"] = str(self._rv)
        if notify:
            prefix, plural, namespace, _ = key
            self._events.append(_Event(self._rv, kind, prefix, plural, namespace, obj))
            self._cond.notify_all()

    def failure(self, method: str, request: Request) -> Obj | None:
        """The error :meth:`fail` set for this verb and kind, as a ``Status``, if any."""
        with self._cond:
            found = self._failures.get((method, request.plural))
        if found is None:
            return None
        code, reason, message = found
        return status_body(code, reason, message)

    def namespace_exists(self, namespace: str) -> bool:
        with self._cond:
            return (
                namespace in BUILTIN_NAMESPACES
                or ("/api/v1", "namespaces", "", namespace) in self._objects
            )

    def _scan(self, request: Request) -> list[Obj]:
        found = [o for key, o in self._objects.items() if key[:3] == request.key]
        return sorted(found, key=lambda o: str(o["metadata"]["name"]))

    def _wants(self, request: Request, event: _Event) -> bool:
        prefix, plural, namespace = request.key
        if (event.prefix, event.plural) != (prefix, plural):
            return False
        if event.type == "BOOKMARK":
            return True
        return event.namespace == namespace and request.selector.matches(event.obj)


def _api_version(prefix: str) -> str:
    return prefix.removeprefix("/api/").removeprefix("/apis/")


def _spec_changed(before: Mapping[str, Any], after: Mapping[str, Any]) -> bool:
    """Whether anything outside ``metadata`` and ``status`` changed (it bumps ``generation``)."""
    skip = ("metadata", "status")
    return {k: v for k, v in before.items() if k not in skip} != {
        k: v for k, v in after.items() if k not in skip
    }


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


__all__ = ["KINDS", "TABLE", "FakeKubeAPI", "Kind", "RecordedRequest", "Selector"]
