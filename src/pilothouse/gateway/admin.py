"""The admin endpoint of ``pilothouse up``: read the fleet, or apply a new spec to it.

``GET /admin/fleet`` answers the replicas (name, model, phase, address, restarts, in
flight) and the autoscaler targets; ``PUT /admin/fleet`` takes a Fleet spec as JSON (what
``pilothouse apply -f`` sends), validates it and hands it to the executor, answering the
first actions it leads to, or 400 with every problem and its field path.

Both answer only clients on a loopback address (403 otherwise, whatever the bind address)
and, when the gateway has an API key, only with ``Authorization: Bearer <key>`` (401).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from pilothouse.config.fleet import FleetSpec, parse_fleet
from pilothouse.errors import ConfigError, RequestError
from pilothouse.gateway.admin_guard import check_admin, is_loopback
from pilothouse.gateway.context import GatewayContext
from pilothouse.openai.errors import error_from_exception

ADMIN_PATH = "/admin/fleet"


class ApplyReport(Protocol):
    """What applying a spec answers (the control plane's report, as JSON)."""

    def as_dict(self) -> dict[str, object]: ...


Apply = Callable[[FleetSpec], ApplyReport]
Status = Callable[[], dict[str, object]]
_JSON = "application/json"


def admin_routes(ctx: GatewayContext, apply: Apply, status: Status) -> list[Route]:
    """The routes to add to the gateway app of ``pilothouse up``."""

    async def fleet(request: Request) -> Response:
        refused = _refuse(ctx, request)
        if refused is not None:
            return refused
        if request.method == "GET":
            return _json(status())
        body = await request.body()
        if len(body) > ctx.settings.max_body_bytes:
            return _json({"error": {"message": "spec too large"}}, 413)
        try:
            spec = parse_fleet(orjson.loads(body), source="request body")
        except orjson.JSONDecodeError as exc:
            return _json(_problems(f"the body is not JSON: {exc}", ()), 400)
        except ConfigError as exc:
            return _json(_problems(str(exc), exc.problems), 400)
        return _json(apply(spec).as_dict())

    return [Route(ADMIN_PATH, fleet, methods=["GET", "PUT"])]


def _refuse(ctx: GatewayContext, request: Request) -> Response | None:
    client = request.client.host if request.client is not None else ""
    try:
        check_admin(ctx.settings, client, request.headers, request.method)
    except RequestError as exc:
        code, body, _ = error_from_exception(exc)
        return Response(body, code, media_type=_JSON)
    return None


def _problems(message: str, problems: tuple[str, ...]) -> dict[str, object]:
    return {
        "error": {"message": message, "type": "invalid_request_error"},
        "problems": list(problems),
    }


def _json(document: object, status: int = 200) -> Response:
    return Response(orjson.dumps(document), status, media_type=_JSON)


__all__ = ["ADMIN_PATH", "admin_routes", "is_loopback"]
