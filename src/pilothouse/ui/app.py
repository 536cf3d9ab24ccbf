"""The console's routes under ``/ui`` (see the package docstring and docs/console.md).

Every page but the login form needs a session (:mod:`pilothouse.ui.auth`); a page whose
data source is absent says what is not enabled and how to enable it. Changes (approve,
deny, verify) are POSTed forms carrying the session's CSRF token. Live parts refresh from
``…/live`` fragments (``static/console.js``); ``/ui/api/fleet`` and ``/ui/api/decisions``
answer the same data as JSON.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from importlib import resources
from typing import Any
from urllib.parse import parse_qs

import orjson
from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from pilothouse.errors import PilothouseError
from pilothouse.governance.service import Governance
from pilothouse.ui import governed
from pilothouse.ui.auth import COOKIE, Session, Sessions, csrf_ok
from pilothouse.ui.fleet import decision_rows, fleet_view
from pilothouse.ui.reports import COLUMNS, find_reports, plot_path
from pilothouse.ui.sources import ConsoleSources

BrowserGuard = Callable[[Mapping[str, str], str], str | None]
"""``(headers, scheme) → None``, or why the request may not use the console (Host, Origin)."""

_PREFIX = "/ui"
_STATIC = {
    "console.js": "text/javascript",
    "console.css": "text/css",
    "favicon.svg": "image/svg+xml",
}
_SECURITY_HEADERS = {
    "content-security-policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
        "frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
    ),
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
    "cache-control": "no-store",
}
_NAV = (
    ("fleet", "Fleet"),
    ("routing", "Routing"),
    ("tenants", "Tenants"),
    ("agents", "Agents"),
    ("approvals", "Approvals"),
    ("audit", "Audit"),
    ("reports", "Reports"),
)
_GOVERNANCE_OFF = (
    "Governance is not enabled on this gateway: add a `gateway.governance` block to the "
    "fleet spec (docs/governance.md), e.g. `governance: {}` for a SQLite store under the "
    "state directory."
)

Page = Callable[[Request, Session], Awaitable[Response]]


def environment() -> Environment:
    env = Environment(
        loader=PackageLoader("pilothouse.ui", "templates"),
        autoescape=select_autoescape(("html",), default=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["when"] = _when
    env.filters["num"] = _num
    env.filters["pct"] = _pct
    return env


def console_routes(
    sources: ConsoleSources, sessions: Sessions | None, guard: BrowserGuard
) -> list[BaseRoute]:
    """The ``/ui`` routes; ``sessions`` None: no admin credential, every page says so."""
    console = _Console(sources, sessions, guard, environment())
    if sessions is None:
        return [
            Route(_PREFIX, console.no_credential, methods=["GET"]),
            Route(_PREFIX + "/{rest:path}", console.no_credential, methods=["GET", "POST"]),
        ]
    page = console.page
    return [
        Route(_PREFIX, console.home, methods=["GET"]),
        Route(_PREFIX + "/", console.home, methods=["GET"]),
        Route(_PREFIX + "/login", console.login, methods=["GET", "POST"]),
        Route(_PREFIX + "/logout", console.logout, methods=["POST"]),
        Route(_PREFIX + "/static/{name}", console.static, methods=["GET"]),
        Route(_PREFIX + "/fleet", page(console.fleet), methods=["GET"]),
        Route(_PREFIX + "/fleet/live", page(console.fleet_live), methods=["GET"]),
        Route(_PREFIX + "/routing", page(console.routing), methods=["GET"]),
        Route(_PREFIX + "/routing/live", page(console.routing_live), methods=["GET"]),
        Route(_PREFIX + "/tenants", page(console.tenants), methods=["GET"]),
        Route(_PREFIX + "/agents", page(console.agents), methods=["GET"]),
        Route(_PREFIX + "/agents/{run}", page(console.agent_run), methods=["GET"]),
        Route(_PREFIX + "/approvals", page(console.approvals), methods=["GET"]),
        Route(_PREFIX + "/approvals/{approval}/{verdict}", page(console.decide), methods=["POST"]),
        Route(_PREFIX + "/audit", page(console.audit), methods=["GET", "POST"]),
        Route(_PREFIX + "/reports", page(console.reports), methods=["GET"]),
        Route(_PREFIX + "/reports/{report}/{plot}", page(console.plot), methods=["GET"]),
        Route(_PREFIX + "/api/fleet", page(console.api_fleet), methods=["GET"]),
        Route(_PREFIX + "/api/decisions", page(console.api_decisions), methods=["GET"]),
    ]


class _Console:
    def __init__(
        self,
        sources: ConsoleSources,
        sessions: Sessions | None,
        guard: BrowserGuard,
        env: Environment,
    ) -> None:
        self.sources = sources
        self.sessions = sessions
        self.guard = guard
        self.env = env

    # -- plumbing ------------------------------------------------------------------------

    def render(
        self, template: str, status: int = 200, session: Session | None = None, **values: Any
    ) -> HTMLResponse:
        html = self.env.get_template(template).render(
            nav=_NAV, session=session, prefix=_PREFIX, **values
        )
        return HTMLResponse(html, status, headers=_SECURITY_HEADERS)

    def refused(self, request: Request) -> Response | None:
        problem = self.guard(request.headers, request.url.scheme)
        if problem is None:
            return None
        return self.render("message.html", 403, title="Forbidden", message=problem)

    def page(self, handler: Page) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            refused = self.refused(request)
            if refused is not None:
                return refused
            assert self.sessions is not None
            session = self.sessions.get(request.cookies.get(COOKIE))
            if session is None:
                if request.method == "GET" and not request.url.path.startswith("/ui/api/"):
                    return RedirectResponse(_PREFIX + "/login", 303)
                return Response("log in at /ui/login", 401, headers=_SECURITY_HEADERS)
            if request.method == "POST":
                form = await _form(request)
                if not csrf_ok(session, form.get("csrf")):
                    return self.render(
                        "message.html", 403, session, title="Forbidden",
                        message="the form's CSRF token is missing or stale: reload the page",
                    )  # fmt: skip
                request.state.form = form
            return await handler(request, session)

        return endpoint

    def governance(self) -> Governance | None:
        return self.sources.governance()

    async def no_credential(self, request: Request) -> Response:
        return self.render(
            "message.html",
            404,
            title="Console not enabled",
            message=(
                "The web console needs an admin credential: set gateway.admin.api_key (or "
                "gateway.api_key) in the fleet spec, restart, and log in here with it. "
                "Turn the console off with gateway.ui.enabled: false."
            ),
        )

    # -- login ---------------------------------------------------------------------------

    async def home(self, request: Request) -> Response:
        return RedirectResponse(_PREFIX + "/fleet", 303)

    async def login(self, request: Request) -> Response:
        refused = self.refused(request)
        if refused is not None:
            return refused
        assert self.sessions is not None
        if request.method == "GET":
            return self.render("login.html", error=None)
        form = await _form(request)
        session = self.sessions.login(form.get("key", ""))
        if session is None:
            return self.render("login.html", 401, error="That is not the admin credential.")
        response = RedirectResponse(_PREFIX + "/fleet", 303, headers=_SECURITY_HEADERS)
        response.set_cookie(
            COOKIE,
            session.token,
            max_age=int(self.sessions.ttl_s),
            path=_PREFIX,
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )
        return response

    async def logout(self, request: Request) -> Response:
        refused = self.refused(request)
        if refused is not None:
            return refused
        assert self.sessions is not None
        self.sessions.logout(request.cookies.get(COOKIE))
        response = RedirectResponse(_PREFIX + "/login", 303)
        response.delete_cookie(COOKIE, path=_PREFIX)
        return response

    async def static(self, request: Request) -> Response:
        name = request.path_params["name"]
        if name not in _STATIC:
            return Response("not found", 404)
        body = resources.files("pilothouse.ui").joinpath("static", name).read_bytes()
        return Response(body, media_type=_STATIC[name], headers={"cache-control": "max-age=300"})

    # -- fleet and routing ---------------------------------------------------------------

    def _fleet(self) -> Any:
        log = self.sources.decisions
        return fleet_view(
            self.sources.pool.endpoints(), log.recent(), log.total, self.sources.control()
        )

    async def fleet(self, request: Request, session: Session) -> Response:
        return self.render("fleet.html", session=session, page="fleet", view=self._fleet())

    async def fleet_live(self, request: Request, session: Session) -> Response:
        return self.render("fleet_live.html", session=session, view=self._fleet())

    async def routing(self, request: Request, session: Session) -> Response:
        rows = decision_rows(self.sources.decisions.recent())
        return self.render("routing.html", session=session, page="routing", rows=rows)

    async def routing_live(self, request: Request, session: Session) -> Response:
        rows = decision_rows(self.sources.decisions.recent())
        return self.render("routing_live.html", session=session, rows=rows)

    async def api_fleet(self, request: Request, session: Session) -> Response:
        return _json(_plain(self._fleet()))

    async def api_decisions(self, request: Request, session: Session) -> Response:
        rows = decision_rows(self.sources.decisions.recent())
        return _json({"decisions": [{**_plain(r.record), "why": r.why} for r in rows]})

    # -- governance ----------------------------------------------------------------------

    async def _governed(
        self, request: Request, session: Session, page: str, read: Callable[[Governance], Any]
    ) -> Response | tuple[Governance, Any]:
        governance = self.governance()
        if governance is None:
            return self.render(
                "off.html", session=session, page=page, title=page.title(), how=_GOVERNANCE_OFF
            )
        try:
            return governance, await asyncio.to_thread(read, governance)
        except governed.NotSql as exc:
            return self.render("off.html", session=session, page=page, title=page, how=str(exc))

    async def tenants(self, request: Request, session: Session) -> Response:
        found = await self._governed(
            request, session, "tenants",
            lambda g: governed.tenants(g.store, g.governor.wall()),
        )  # fmt: skip
        if isinstance(found, Response):
            return found
        return self.render("tenants.html", session=session, page="tenants", subjects=found[1])

    async def agents(self, request: Request, session: Session) -> Response:
        found = await self._governed(request, session, "agents", lambda g: governed.runs(g.store))
        if isinstance(found, Response):
            return found
        return self.render("agents.html", session=session, page="agents", runs=found[1])

    async def agent_run(self, request: Request, session: Session) -> Response:
        run_id = request.path_params["run"]
        try:
            found = await self._governed(
                request, session, "agents", lambda g: governed.run_detail(g.store, run_id)
            )
        except PilothouseError as exc:
            return self.render("message.html", 404, session, title="No such run", message=str(exc))
        if isinstance(found, Response):
            return found
        run, steps = found[1]
        return self.render("run.html", session=session, page="agents", run=run, steps=steps)

    async def approvals(
        self, request: Request, session: Session, note: str | None = None
    ) -> Response:
        found = await self._governed(
            request, session, "approvals",
            lambda g: governed.approvals(g.store, g.governor.wall()),
        )  # fmt: skip
        if isinstance(found, Response):
            return found
        pending, others = found[1]
        return self.render(
            "approvals.html", session=session, page="approvals",
            pending=pending, others=others, note=note,
        )  # fmt: skip

    async def decide(self, request: Request, session: Session) -> Response:
        verdict = request.path_params["verdict"]
        if verdict not in ("approve", "deny"):
            return self.render("message.html", 404, session, title="Not found", message=verdict)
        approval_id = request.path_params["approval"]
        by = (request.state.form.get("by") or "console").strip()[:128] or "console"
        try:
            found = await self._governed(
                request, session, "approvals",
                lambda g: governed.decide(
                    g.store, approval_id, verdict == "approve", by, g.governor.wall()
                ),
            )  # fmt: skip
        except PilothouseError as exc:
            return await self.approvals(request, session, f"Not decided: {exc}")
        if isinstance(found, Response):
            return found
        return RedirectResponse(_PREFIX + "/approvals", 303)

    async def audit(self, request: Request, session: Session) -> Response:
        try:
            after = max(0, int(request.query_params.get("after", "0")))
        except ValueError:
            after = 0
        verifying = request.method == "POST"

        def read(g: Governance) -> Any:
            verdict = governed.verify(g.store) if verifying else None
            return governed.audit_page(g.store, after), verdict

        found = await self._governed(request, session, "audit", read)
        if isinstance(found, Response):
            return found
        records, verdict = found[1]
        return self.render(
            "audit.html", session=session, page="audit", records=records, verdict=verdict,
            after=after, page_size=governed.AUDIT_PAGE,
        )  # fmt: skip

    # -- reports -------------------------------------------------------------------------

    async def reports(self, request: Request, session: Session) -> Response:
        root = self.sources.reports_dir
        if root is None:
            return self.render(
                "off.html", session=session, page="reports", title="Reports",
                how=(
                    "No report directory is set: point gateway.ui.reports_dir at the output "
                    "of `pilothouse bench sim --out DIR` (or a directory of them)."
                ),
            )  # fmt: skip
        found = await asyncio.to_thread(find_reports, root)
        return self.render(
            "reports.html", session=session, page="reports", reports=found, columns=COLUMNS,
            root=str(root),
        )  # fmt: skip

    async def plot(self, request: Request, session: Session) -> Response:
        root = self.sources.reports_dir
        path = None
        if root is not None:
            params = request.path_params
            path = await asyncio.to_thread(plot_path, root, params["report"], params["plot"])
        if path is None:
            return Response("not found", 404)
        return FileResponse(path, media_type="image/png")


async def _form(request: Request) -> dict[str, str]:
    """A urlencoded form (the console's forms are small and never multipart)."""
    body = await request.body()
    fields = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
    return {name: values[-1] for name, values in fields.items()}


def _json(doc: object) -> Response:
    return Response(orjson.dumps(doc), media_type="application/json", headers=_SECURITY_HEADERS)


def _plain(value: Any) -> Any:
    """Dataclasses (slots) to JSON-ready values."""
    if hasattr(value, "__dataclass_fields__"):
        return {name: _plain(getattr(value, name)) for name in value.__dataclass_fields__}
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _when(value: float | None) -> str:
    if value is None:
        return ""
    return datetime.fromtimestamp(value, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _num(value: object, digits: int = 3) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _pct(value: float | None) -> str:
    return "" if value is None else f"{100 * value:.0f}%"
