"""The write side of :mod:`pilothouse.testing.fake_kube`: server-side apply and delete requests.

Each function answers one HTTP request the way ``kube-apiserver`` does: the checks it makes
before writing (field manager given, body kind and name matching the URL, a valid name, the
namespace existing), the ``Status`` bodies of its refusals (with ``details``, which clients
read to tell a missing object from a missing namespace), and 409 for apply conflicts.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pilothouse.testing import _kube_ssa
from pilothouse.testing._kube_discovery import BY_PATH, Kind
from pilothouse.testing._kube_http import Request, status_body

if TYPE_CHECKING:
    from pilothouse.testing.fake_kube import FakeKubeAPI

Obj = dict[str, Any]
Reply = Callable[[int, Obj], None]


def serve_apply(api: FakeKubeAPI, request: Request, body: Any, reply: Reply) -> None:
    """Answer a server-side apply ``PATCH``."""
    kind = BY_PATH[(request.prefix, request.plural)]
    problem = api.failure("PATCH", request) or _apply_problem(request, kind, body)
    if problem is None and kind.namespaced and not api.namespace_exists(request.namespace):
        problem = _missing_namespace(request.namespace)
    if problem is not None:
        reply(problem["code"], problem)
        return
    config = copy.deepcopy(body)
    if kind.namespaced:
        config["metadata"]["namespace"] = request.namespace
    try:
        code, obj = api.apply(
            config,
            manager=request.query["fieldManager"],
            force=request.query.get("force") == "true",
            dry_run=request.query.get("dryRun") == "All",
        )
    except _kube_ssa.ApplyConflict as exc:
        reply(409, status_body(409, "Conflict", str(exc), _details(kind, request)))
        return
    reply(code, obj)


def serve_delete(api: FakeKubeAPI, request: Request, reply: Reply) -> None:
    """Answer a ``DELETE`` of one object (``dryRun=All`` keeps it)."""
    kind = BY_PATH[(request.prefix, request.plural)]
    problem = api.failure("DELETE", request)
    if problem is not None:
        reply(problem["code"], problem)
        return
    obj = api.take(request, dry_run=request.query.get("dryRun") == "All")
    if obj is None:
        reply(404, not_found(kind, request))
    else:
        reply(200, obj)


def not_found(kind: Kind, request: Request) -> Obj:
    """The 404 for an object that does not exist (``details`` name the object)."""
    message = f'{request.plural} "{request.name}" not found'
    return status_body(404, "NotFound", message, _details(kind, request))


_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def _apply_problem(request: Request, kind: Kind, body: Any) -> Obj | None:
    """The ``Status`` a real server answers to this apply request, if it is refused."""
    if not request.query.get("fieldManager"):
        return status_body(
            400, "BadRequest", "PATCH, fieldManager: Required value: is required for apply patch"
        )
    if not isinstance(body, dict) or not isinstance(body.get("metadata"), dict):
        return status_body(400, "BadRequest", "the body of an apply patch must be an object")
    if body.get("apiVersion") != kind.api_version or body.get("kind") != kind.kind:
        message = (
            f"the API version/kind in the data ({body.get('apiVersion')}/{body.get('kind')}) "
            f"does not match the request path ({kind.api_version}/{kind.kind})"
        )
        return status_body(400, "BadRequest", message)
    meta = body["metadata"]
    if meta.get("name") != request.name:
        message = (
            f"the name of the object ({meta.get('name')}) does not match the name on the URL "
            f"({request.name})"
        )
        return status_body(400, "BadRequest", message)
    if kind.namespaced and meta.get("namespace", request.namespace) != request.namespace:
        message = (
            "the namespace of the provided object does not match the namespace sent on the request"
        )
        return status_body(400, "BadRequest", message)
    if not _NAME.match(str(request.name)) or len(str(request.name)) > 253:
        message = (
            f'{kind.kind} "{request.name}" is invalid: metadata.name: Invalid value: '
            f'"{request.name}": a lowercase RFC 1123 subdomain must consist of lower case '
            "alphanumeric characters, '-' or '.'"
        )
        return status_body(422, "Invalid", message, _details(kind, request))
    return None


def _missing_namespace(namespace: str) -> Obj:
    details = {"name": namespace, "kind": "namespaces"}
    return status_body(404, "NotFound", f'namespaces "{namespace}" not found', details)


def _details(kind: Kind, request: Request) -> dict[str, Any]:
    group = kind.api_version.rpartition("/")[0]
    return {"name": request.name or "", "group": group, "kind": kind.plural}
