"""The HTTP side of :mod:`pilothouse.testing.fake_kube`: paths, selectors, chunked streams,
discovery, and the writes (server-side apply ``PATCH`` and ``DELETE``)."""

from __future__ import annotations

import contextlib
import json
import re
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from types import MappingProxyType
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

import yaml

from pilothouse.testing._kube_discovery import BY_PATH, TABLE, discovery

if TYPE_CHECKING:
    from pilothouse.testing.fake_kube import FakeKubeAPI

_PATH = re.compile(
    r"^(?P<prefix>/api/v1|/apis/[^/]+/[^/]+)/namespaces/(?P<ns>[^/]+)/(?P<plural>[^/]+)"
    r"(?:/(?P<name>[^/]+))?$"
)
_CLUSTER_PATH = re.compile(
    r"^(?P<prefix>/api/v1|/apis/[^/]+/[^/]+)/(?P<plural>[^/]+)(?:/(?P<name>[^/]+))?$"
)
KINDS: Mapping[str, tuple[str, str]] = MappingProxyType(
    {k.kind: (k.prefix, k.plural) for k in TABLE}  # kind → (API path prefix, plural)
)
APPLY_PATCH = "application/apply-patch+yaml"
_EQUALITY = re.compile(r"^\s*([^=!\s]+)\s*(==|=|!=)\s*([^\s]*)\s*$")


def status_body(
    code: int, reason: str, message: str, details: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """A ``v1 Status`` failure, as the API server returns for errors."""
    body: dict[str, Any] = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
    if details is not None:
        body["details"] = dict(details)
    return body


@dataclass(frozen=True, slots=True)
class Selector:
    """Equality-based ``labelSelector`` and ``metadata.*`` ``fieldSelector`` terms."""

    labels: tuple[tuple[str, str, str], ...] = ()
    fields: tuple[tuple[str, str, str], ...] = ()

    @classmethod
    def parse(cls, label_selector: str, field_selector: str) -> Selector:
        labels = _terms(label_selector)
        fields = _terms(field_selector)
        for key, _, _ in fields:
            if key not in ("metadata.name", "metadata.namespace"):
                raise ValueError(f'field label not supported: "{key}"')
        return cls(labels, fields)

    def matches(self, obj: Mapping[str, Any]) -> bool:
        metadata = obj.get("metadata") or {}
        labels = metadata.get("labels") or {}
        values = {
            "metadata.name": metadata.get("name"),
            "metadata.namespace": metadata.get("namespace"),
        }
        return all(_holds(labels.get(k), op, v) for k, op, v in self.labels) and all(
            _holds(values.get(k), op, v) for k, op, v in self.fields
        )


def _terms(selector: str) -> tuple[tuple[str, str, str], ...]:
    terms = []
    for part in filter(None, (p.strip() for p in selector.split(","))):
        match = _EQUALITY.match(part)
        if match is None:
            raise ValueError(f"unable to parse requirement: {part!r} (the fake knows = == != only)")
        terms.append((match[1], match[2], match[3]))
    return tuple(terms)


def _holds(actual: object, op: str, expected: str) -> bool:
    return (actual == expected) == (op != "!=")


@dataclass(frozen=True, slots=True)
class Request:
    """A parsed request for a namespaced collection (or one object in it)."""

    path: str
    prefix: str
    namespace: str
    plural: str
    name: str | None
    query: Mapping[str, str] = field(default_factory=dict)
    selector: Selector = field(default_factory=Selector)

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.prefix, self.plural, self.namespace)

    @property
    def watch(self) -> bool:
        return self.query.get("watch") in ("true", "1")


def parse_request(raw_path: str) -> Request | None:
    """``None`` when the path is not a resource path (namespaced, or of a cluster-scoped kind)."""
    parts = urlsplit(raw_path)
    match = _PATH.match(parts.path)
    namespace = match["ns"] if match else ""
    if match is None:
        match = _CLUSTER_PATH.match(parts.path)
        kind = BY_PATH.get((match["prefix"], match["plural"])) if match else None
        if match is None or kind is None or kind.namespaced:
            return None
    query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
    return Request(
        path=parts.path,
        prefix=match["prefix"],
        namespace=namespace,
        plural=match["plural"],
        name=match["name"],
        query=query,
        selector=Selector.parse(query.get("labelSelector", ""), query.get("fieldSelector", "")),
    )


_NOT_FOUND = "the server could not find the requested resource"


class KubeRequestHandler(BaseHTTPRequestHandler):
    """One connection per request (``Connection: close``); watches stream chunked JSON."""

    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep test output clean

    @property
    def api(self) -> FakeKubeAPI:
        return self.server.api  # type: ignore[attr-defined, no-any-return]

    def do_GET(self) -> None:
        self.close_connection = True
        doc = discovery(urlsplit(self.path).path, self.api.installed())
        if doc is not None:
            self._reply(200, doc)
            return
        request = self._request()
        if request is None:
            return
        self.api.note(request, "GET")
        if request.watch and not request.name:
            self._watch(request)
        else:
            self.api.serve(request, self._reply)

    def do_PATCH(self) -> None:
        self.close_connection = True
        body = self._body()
        request = self._request()
        if request is None:
            return
        self.api.note(request, "PATCH")
        content_type = (self.headers.get("Content-Type") or "").split(";")[0].strip()
        if content_type != APPLY_PATCH:
            message = (
                f"the fake only supports server-side apply ({APPLY_PATCH}), not {content_type}"
            )
            self._reply(415, status_body(415, "UnsupportedMediaType", message))
        elif not request.name:
            self._reply(405, status_body(405, "MethodNotAllowed", "PATCH needs an object name"))
        else:
            from pilothouse.testing._kube_writes import serve_apply  # imports this module

            serve_apply(self.api, request, body, self._reply)

    def do_DELETE(self) -> None:
        self.close_connection = True
        self._body()
        request = self._request()
        if request is None:
            return
        self.api.note(request, "DELETE")
        if not request.name:
            self._reply(405, status_body(405, "MethodNotAllowed", "the fake deletes by name only"))
        else:
            from pilothouse.testing._kube_writes import serve_delete  # imports this module

            serve_delete(self.api, request, self._reply)

    def _request(self) -> Request | None:
        """The parsed request, or ``None`` after replying 400 or 404."""
        try:
            request = parse_request(self.path)
        except ValueError as exc:
            self._reply(400, status_body(400, "BadRequest", str(exc)))
            return None
        if request is None or not self.api.serves(request):
            self._reply(404, status_body(404, "NotFound", _NOT_FOUND))
            return None
        return request

    def _body(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            return yaml.safe_load(raw) if raw else None
        except yaml.YAMLError:
            return raw  # not a mapping: the apply handler rejects it

    def _reply(self, code: int, body: Mapping[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)

    def _watch(self, request: Request) -> None:
        api = self.api
        cursor, initial, generation = api.watch_start(request)
        if cursor is None and api.expire_with_status:
            self._reply(410, api.expired_status(request))
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Connection", "close")
        self.end_headers()
        try:
            if cursor is None:  # real servers answer 200, then one ERROR event
                self._chunk({"type": "ERROR", "object": api.expired_status(request)})
            else:
                for event in initial:
                    self._chunk(event)
                if self._stream(request, cursor, generation) == "abrupt":
                    _cut(self.connection)
                    return
            self.wfile.write(b"0\r\n\r\n")
        except OSError:
            pass  # the client went away

    def _stream(self, request: Request, cursor: int, generation: int) -> str:
        timeout = float(request.query.get("timeoutSeconds") or self.api.max_watch_s)
        deadline = time.monotonic() + min(timeout, self.api.max_watch_s)
        while True:
            events, stop = self.api.watch_next(request, cursor, generation, deadline)
            for event in events:
                self._chunk({"type": event.type, "object": event.obj})
                cursor = event.rv
            if stop is not None:
                return stop

    def _chunk(self, event: Mapping[str, Any]) -> None:
        data = json.dumps(event).encode() + b"\n"
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()


def _cut(sock: socket.socket) -> None:
    """Cut a connection the way a lost network does (no terminating chunk)."""
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
