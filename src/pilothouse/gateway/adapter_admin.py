"""``/admin/adapters``: see and change which replicas hold which LoRA adapter.

``GET /admin/adapters`` answers every known adapter (declared in the spec or found on a
replica) with its base model, source and the replicas holding it. ``POST /admin/adapters``
loads or unloads one through vLLM's dynamic LoRA endpoints::

    {"action": "load", "lora_name": "sql-lora", "lora_path": "/adapters/sql",
     "model": "llama", "replicas": ["llama-0"]}
    {"action": "unload", "lora_name": "sql-lora"}

``lora_path`` and ``model`` default to the spec's declaration; ``replicas`` to every ready
replica of the base model (load) or every replica holding the adapter (unload). The answer
lists each replica's status and message: 200 when all succeeded, 502 otherwise. Like
``/admin/fleet``, it answers loopback clients only, with the API key when one is set.
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from pilothouse.errors import BadRequest, RequestError, UpstreamError
from pilothouse.gateway.adapters import load_adapter, unload_adapter
from pilothouse.gateway.admin_guard import check_admin
from pilothouse.gateway.context import GatewayContext
from pilothouse.openai.errors import error_from_exception
from pilothouse.scheduling.types import Endpoint

ADAPTERS_PATH = "/admin/adapters"
_JSON = "application/json"


def adapter_routes(ctx: GatewayContext) -> list[Route]:
    async def adapters(request: Request) -> Response:
        try:
            _check(ctx, request)
            if request.method == "GET":
                return _json({"adapters": _listing(ctx)})
            doc = _body(await request.body())
            results = await _change(ctx, doc)
        except RequestError as exc:
            status, body, _ = error_from_exception(exc)
            return Response(body, status, media_type=_JSON)
        ok = all(r["status"] == 200 for r in results)
        return _json({"ok": ok, "results": results}, 200 if ok else 502)

    return [Route(ADAPTERS_PATH, adapters, methods=["GET", "POST"])]


def _check(ctx: GatewayContext, request: Request) -> None:
    client = request.client.host if request.client is not None else ""
    check_admin(ctx.settings, client, request.headers, request.method)


def _listing(ctx: GatewayContext) -> dict[str, dict[str, object]]:
    held = ctx.adapters.held()
    listing: dict[str, dict[str, object]] = {}
    for name, base in sorted(ctx.adapters.names().items()):
        declared = ctx.adapters.declared(name)
        listing[name] = {
            "model": base,
            "source": declared.source if declared is not None else None,
            "replicas": sorted(e for e, names in held.items() if name in names),
        }
    return listing


def _body(raw: bytes) -> dict[str, Any]:
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"the body is not JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise BadRequest("the body must be a JSON object")
    if doc.get("action") not in ("load", "unload"):
        raise BadRequest("'action' must be 'load' or 'unload'", param="action")
    if not isinstance(doc.get("lora_name"), str) or not doc["lora_name"]:
        raise BadRequest("'lora_name' must be a non-empty string", param="lora_name")
    return doc


async def _change(ctx: GatewayContext, doc: dict[str, Any]) -> list[dict[str, object]]:
    name: str = doc["lora_name"]
    declared = ctx.adapters.declared(name)
    base = doc.get("model") or ctx.adapters.base_of(name)
    if not isinstance(base, str) or not ctx.pool.has_model(base):
        raise BadRequest(f"name the base model of '{name}' in 'model'", param="model")
    replicas = _replicas(ctx, doc, base, name)
    results: list[dict[str, object]] = []
    for endpoint in replicas:
        try:
            if doc["action"] == "load":
                path = doc.get("lora_path") or (declared.path if declared else None)
                if not isinstance(path, str):
                    raise BadRequest("'lora_path' is needed for an undeclared adapter")
                status, text = await load_adapter(ctx.upstream(), endpoint.address, name, path)
                if status == 200:
                    ctx.adapters.add(endpoint, name)
            else:
                status, text = await unload_adapter(ctx.upstream(), endpoint.address, name)
                if status in (200, 404):
                    ctx.adapters.discard(endpoint, name)
        except UpstreamError as exc:
            status, text = 502, exc.message
        results.append({"replica": endpoint.name, "status": status, "message": text[:500]})
    return results


def _replicas(ctx: GatewayContext, doc: dict[str, Any], base: str, name: str) -> list[Endpoint]:
    wanted = doc.get("replicas")
    ready = ctx.pool.candidates(base)
    if wanted is None:
        if doc["action"] == "load":
            return ready
        return [e for e in ready if ctx.adapters.holds(e, name)]
    if not isinstance(wanted, list) or not all(isinstance(w, str) for w in wanted):
        raise BadRequest("'replicas' must be a list of replica names", param="replicas")
    by_name = {e.name: e for e in ready}
    missing = [w for w in wanted if w not in by_name]
    if missing:
        raise BadRequest(f"no ready replica of '{base}' named {missing}", param="replicas")
    return [by_name[w] for w in wanted]


def _json(document: object, status: int = 200) -> Response:
    return Response(orjson.dumps(document), status, media_type=_JSON)
