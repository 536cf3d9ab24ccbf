"""``/admin/orgs``, ``/admin/teams``, ``/admin/keys``, ``/admin/usage``: governance over HTTP.

The same operations as ``pilothouse orgs|teams|keys|usage``, for automation and the web
console, behind the admin guard (``gateway.admin.api_key``: a credential of its own, never
one of the keys it manages)::

    POST /admin/orgs                {"name": "acme", "quota": {...}}
    POST /admin/teams               {"org": "acme", "name": "research", "quota": {...},
                                     "max_priority": 5, "default_priority": 0}
    PUT  /admin/quotas/{id}         {...a quota...}          (an org, team or key id)
    POST /admin/keys                {"team": "research", "name": "ci", "models": ["m"],
                                     "max_priority": 3, "expires_at": 1.8e9,
                                     "networks": ["10.0.0.0/8"], "kind": "agent",
                                     "owner": "alice", "quota": {...}}
                                    → the key's plaintext, this once
    POST /admin/keys/{id}/revoke
    GET  /admin/orgs | /admin/teams?org= | /admin/keys?team=&revoked=true
    GET  /admin/usage?by=team,model&since=2026-12-01&until=2026-12-08
    GET  /admin/approvals?status=pending             (the tool gateway's approvals)
    POST /admin/approvals/{id}/approve  or  /deny    {"by": "alice"}

A quota is ``{"requests_per_min", "tokens_per_min", "concurrent", "budget_tokens",
"budget_cost", "budget_period"}`` (each optional). A change made here is read back into
this replica's directory at once; other replicas see it within ``sync_interval_s``.
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, Literal, TypeVar, get_args

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from pilothouse.errors import BadRequest, NotFound, RequestError
from pilothouse.gateway.admin_guard import check_admin
from pilothouse.gateway.context import GatewayContext
from pilothouse.governance.keys import KeyScope
from pilothouse.governance.limits import Limit
from pilothouse.governance.records import (
    KeyRecord,
    Organisation,
    Quota,
    Team,
    UsageDimension,
)
from pilothouse.governance.service import Governance
from pilothouse.governance.store import SqlStore
from pilothouse.governance.tool_store import Approval, ToolStore
from pilothouse.openai.errors import error_from_exception

_JSON = "application/json"
_DIMENSIONS = frozenset(get_args(UsageDimension))
_APPROVAL_STATES = frozenset({"pending", "approved", "denied", "used", "expired"})


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class QuotaBody(_Body):
    requests_per_min: int | None = Field(default=None, gt=0)
    tokens_per_min: int | None = Field(default=None, gt=0)
    concurrent: int | None = Field(default=None, gt=0)
    budget_tokens: float | None = Field(default=None, ge=0)
    budget_cost: float | None = Field(default=None, ge=0)
    budget_period: Literal["total", "day", "month"] = "month"

    def quota(self) -> Quota:
        limit = Limit(self.requests_per_min, self.tokens_per_min, self.concurrent)
        return Quota(limit, self.budget_tokens, self.budget_cost, self.budget_period)


class OrgBody(_Body):
    name: str = Field(min_length=1, max_length=128)
    quota: QuotaBody = Field(default_factory=QuotaBody)


class TeamBody(_Body):
    org: str = Field(min_length=1)
    name: str = Field(min_length=1, max_length=128)
    quota: QuotaBody = Field(default_factory=QuotaBody)
    max_priority: int | None = None
    default_priority: int = 0


class KeyBody(_Body):
    team: str = Field(min_length=1)
    name: str = Field(min_length=1, max_length=128)
    kind: Literal["user", "agent"] = "user"
    owner: str | None = None
    models: list[str] = Field(default_factory=list)
    max_priority: int | None = None
    expires_at: float | None = None
    """Unix time after which the key is refused."""
    networks: list[str] = Field(default_factory=list)
    """CIDR ranges the key may be used from."""
    quota: QuotaBody = Field(default_factory=QuotaBody)

    def scope(self) -> KeyScope:
        try:
            networks = tuple(ipaddress.ip_network(n, strict=False) for n in self.networks)
        except ValueError as exc:
            raise BadRequest(f"'networks': {exc}", param="networks") from exc
        return KeyScope(frozenset(self.models), self.max_priority, self.expires_at, networks)


class DecisionBody(_Body):
    by: str = Field(min_length=1, max_length=128)
    """Who decided (recorded with the approval and in the audit log)."""


_M = TypeVar("_M", bound=_Body)
Handler = Callable[[Governance, Request], Awaitable[object]]


def governance_routes(ctx: GatewayContext) -> list[Route]:
    """The governance admin routes (they answer 404 while governance is off)."""

    def route(path: str, handler: Handler, methods: list[str], creates: bool = True) -> Route:
        async def endpoint(request: Request) -> Response:
            try:
                client = request.client.host if request.client is not None else ""
                check_admin(ctx.settings, client, request.headers, request.method)
                governance = ctx.governance
                if governance is None:
                    raise NotFound("governance is off: set gateway.governance in the fleet spec")
                document = await handler(governance, request)
            except RequestError as exc:
                status, body, _ = error_from_exception(exc)
                return Response(body, status, media_type=_JSON)
            status = 201 if creates and request.method == "POST" else 200
            return Response(orjson.dumps(document), status, media_type=_JSON)

        return Route(path, endpoint, methods=methods)

    return [
        route("/admin/orgs", _orgs, ["GET", "POST"]),
        route("/admin/teams", _teams, ["GET", "POST"]),
        route("/admin/keys", _keys, ["GET", "POST"]),
        route("/admin/keys/{key}/revoke", _revoke, ["POST"], creates=False),
        route("/admin/quotas/{subject}", _quota, ["PUT"]),
        route("/admin/usage", _usage, ["GET"]),
        route("/admin/approvals", _approvals, ["GET"]),
        route("/admin/approvals/{approval}/{verdict}", _decide, ["POST"], creates=False),
    ]


async def _orgs(governance: Governance, request: Request) -> object:
    store = governance.store
    if request.method == "GET":
        return {"orgs": [org_doc(o) for o in await asyncio.to_thread(store.list_orgs)]}
    body = _parse(OrgBody, await request.body())
    org = await asyncio.to_thread(store.create_org, body.name, body.quota.quota())
    await governance.sync_once()
    return org_doc(org)


async def _teams(governance: Governance, request: Request) -> object:
    store = governance.store
    if request.method == "GET":
        org = request.query_params.get("org")
        return {"teams": [team_doc(t) for t in await asyncio.to_thread(store.list_teams, org)]}
    body = _parse(TeamBody, await request.body())
    team = await asyncio.to_thread(
        lambda: store.create_team(
            body.org,
            body.name,
            body.quota.quota(),
            max_priority=body.max_priority,
            default_priority=body.default_priority,
        )
    )
    await governance.sync_once()
    return team_doc(team)


async def _keys(governance: Governance, request: Request) -> object:
    store = governance.store
    if request.method == "GET":
        team = request.query_params.get("team")
        revoked = request.query_params.get("revoked", "").lower() in ("1", "true", "yes")
        keys = await asyncio.to_thread(lambda: store.list_keys(team, revoked=revoked))
        return {"keys": [key_doc(k) for k in keys]}
    body = _parse(KeyBody, await request.body())
    scope = body.scope()
    plaintext, record = await asyncio.to_thread(
        lambda: store.create_key(
            body.team,
            body.name,
            kind=body.kind,
            owner=body.owner,
            scope=scope,
            quota=body.quota.quota(),
        )
    )
    await governance.sync_once()
    return {**key_doc(record), "key": plaintext}


async def _revoke(governance: Governance, request: Request) -> object:
    key = request.path_params["key"]
    record = await asyncio.to_thread(governance.store.revoke_key, key)
    await governance.sync_once()
    return key_doc(record)


async def _quota(governance: Governance, request: Request) -> object:
    subject = request.path_params["subject"]
    quota = _parse(QuotaBody, await request.body()).quota()
    await asyncio.to_thread(governance.store.update_quota, subject, quota)
    await governance.sync_once()
    return {"subject": subject, "quota": quota_doc(quota)}


async def _usage(governance: Governance, request: Request) -> object:
    params = request.query_params
    by = [d.strip() for d in params.get("by", "team,model").split(",") if d.strip()]
    unknown = [d for d in by if d not in _DIMENSIONS]
    if unknown:
        raise BadRequest(f"'by' takes {', '.join(sorted(_DIMENSIONS))}; not {unknown}")
    since, until = _when(params.get("since"), "since"), _when(params.get("until"), "until")
    dimensions: list[UsageDimension] = [d for d in by if d in _DIMENSIONS]  # type: ignore[misc]
    rows = await asyncio.to_thread(governance.store.usage, dimensions, since, until)
    return {
        "by": by,
        "rows": [
            {
                **dict(zip(by, row.group, strict=True)),
                "requests": row.requests,
                "prompt_tokens": row.prompt_tokens,
                "completion_tokens": row.completion_tokens,
                "cost": row.cost,
            }
            for row in rows
        ],
    }


async def _approvals(governance: Governance, request: Request) -> object:
    """The tool gateway's approvals (``?status=pending``), expired ones marked so."""
    status = request.query_params.get("status") or None
    if status is not None and status not in _APPROVAL_STATES:
        raise BadRequest(f"'status' is one of {', '.join(sorted(_APPROVAL_STATES))}")
    tools = _tool_store(governance)
    now = governance.governor.wall()
    approvals = await asyncio.to_thread(tools.list_approvals, status, now)  # type: ignore[arg-type]
    return {"approvals": [approval_doc(a) for a in approvals]}


async def _decide(governance: Governance, request: Request) -> object:
    """``POST /admin/approvals/{id}/approve`` (or ``/deny``) with ``{"by": "alice"}``."""
    verdict = request.path_params["verdict"]
    if verdict not in ("approve", "deny"):
        raise NotFound(f"POST /admin/approvals/ID/approve or /deny, not /{verdict}")
    body = _parse(DecisionBody, await request.body())
    tools = _tool_store(governance)
    now = governance.governor.wall()
    approval = await asyncio.to_thread(
        tools.decide, request.path_params["approval"], verdict == "approve", body.by, now
    )
    return approval_doc(approval)


def _tool_store(governance: Governance) -> ToolStore:
    store = governance.store
    if not isinstance(store, SqlStore):
        raise NotFound("approvals live in a SQL governance store")
    return ToolStore(store)


def approval_doc(approval: Approval) -> dict[str, Any]:
    """An approval as the API shows it: the exact call it is bound to, never arguments."""
    return {
        "id": approval.id,
        "session": approval.session,
        "principal": approval.principal,
        "tool": approval.tool,
        "args_hash": approval.args_hash,
        "reason": approval.reason,
        "status": approval.status,
        "created_at": approval.created_at,
        "expires_at": approval.expires_at,
        "decided_by": approval.decided_by,
        "decided_at": approval.decided_at,
    }


def _when(text: str | None, name: str) -> datetime | None:
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as exc:
        raise BadRequest(f"'{name}' is not an ISO date or time: {text!r}", param=name) from exc
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _parse(model: type[_M], raw: bytes) -> _M:
    try:
        return model.model_validate_json(raw or b"{}")
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in exc.errors()
        )
        raise BadRequest(problems) from exc


def quota_doc(quota: Quota) -> dict[str, Any]:
    limit = quota.limit
    return {
        "requests_per_min": limit.requests_per_min,
        "tokens_per_min": limit.tokens_per_min,
        "concurrent": limit.concurrent,
        "budget_tokens": quota.budget_tokens,
        "budget_cost": quota.budget_cost,
        "budget_period": quota.budget_period,
    }


def org_doc(org: Organisation) -> dict[str, Any]:
    return {"id": org.id, "name": org.name, "quota": quota_doc(org.quota)}


def team_doc(team: Team) -> dict[str, Any]:
    return {
        "id": team.id,
        "name": team.name,
        "org_id": team.org_id,
        "quota": quota_doc(team.quota),
        "max_priority": team.max_priority,
        "default_priority": team.default_priority,
    }


def key_doc(key: KeyRecord) -> dict[str, Any]:
    """A key as the API shows it: never its digest, only the prefix people recognise."""
    scope = key.scope
    return {
        "id": key.id,
        "name": key.name,
        "shown": key.shown,
        "team_id": key.team_id,
        "kind": key.kind,
        "owner": key.owner,
        "models": sorted(scope.models),
        "max_priority": scope.max_priority,
        "expires_at": scope.expires_at,
        "networks": [str(n) for n in scope.networks],
        "quota": quota_doc(key.quota),
        "created_at": key.created_at,
        "revoked_at": key.revoked_at,
    }
