"""The tool gateway's HTTP app: ``/mcp`` (streamable HTTP) behind Host, Origin and identity.

Every request to ``/mcp`` passes, in order, before the MCP SDK sees it:

1. **Host** (DNS rebinding): a loopback name, the address the gateway is bound to, or one
   of ``allowed_hosts``; otherwise 421. Bound to a wildcard address (``0.0.0.0``) the
   gateway is meant to be reached by names it cannot know, and any Host passes.
2. **Origin**: absent (not a browser), or exactly one of ``tools.allowed_origins``;
   otherwise 403.
3. **Identity**: ``Authorization: Bearer <API key or JWT>``, checked by ``authenticate``
   (governance's :meth:`~pilothouse.governance.governor.Governor.authenticate`); 401
   otherwise. The header goes no further than this check: nothing of it reaches an
   upstream server.
4. **Session owner** (confused deputy): a session belongs to the identity that opened it;
   a request with another identity's ``Mcp-Session-Id`` is answered 404, exactly as an
   unknown session is, so a leaked session id gives nothing away; the guard audits the
   attempt (``refused``, rule ``session-owner``).

The SDK's :class:`~mcp.server.streamable_http_manager.StreamableHTTPSessionManager` then
answers each POST with JSON (see ``create_toolgateway_app``) and serves both the
initialize-handshake revisions (stateful sessions, 2025-11-25 and earlier) and the
sessionless 2026-07-28 revision.
"""

from __future__ import annotations

import contextlib
import ipaddress
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

from mcp.server.streamable_http import MCP_SESSION_ID_HEADER
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pilothouse.config.tools import ToolsSpec
from pilothouse.errors import Unauthorized
from pilothouse.governance.governor import Credentials, Identity
from pilothouse.toolgateway.guard import ToolGuard
from pilothouse.toolgateway.server import IDENTITY_SCOPE_KEY, ToolGatewayServer
from pilothouse.toolgateway.upstream import Upstreams

Authenticate = Callable[[Credentials], Identity]

_LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
_WILDCARDS = frozenset({"0.0.0.0", "::", ""})
_SESSION_HEADER = MCP_SESSION_ID_HEADER.lower().encode("latin-1")


def create_toolgateway_app(
    spec: ToolsSpec,
    guard: ToolGuard,
    upstreams: Upstreams,
    authenticate: Authenticate,
    *,
    host: str = "127.0.0.1",
    allowed_hosts: Sequence[str] = (),
    session_idle_timeout_s: float | None = 30 * 60,
    traced: bool = False,
) -> Starlette:
    """The ASGI app serving ``/mcp`` (see the module docstring). Create it before
    starting ``upstreams``: it watches their listings from the first one. ``traced``: a
    tracer provider is installed; decisions go on the SDK's ``tools/call`` spans."""
    server = ToolGatewayServer(guard, upstreams, traced=traced)
    # JSON answers, not an SSE stream per POST: the gateway sends nothing in a call's
    # stream before its result (list_changed goes on the session's GET stream), and the
    # SDK client closes an SSE answer before its end, which costs the agent a new TCP
    # connection per call; a JSON answer is read whole and the connection kept alive.
    manager = StreamableHTTPSessionManager(
        server.mcp, json_response=True, session_idle_timeout=session_idle_timeout_s
    )
    front = _Front(
        manager.handle_request,
        server,
        authenticate,
        hosts=_allowed_hosts(host, allowed_hosts),
        origins=frozenset(spec.allowed_origins),
    )

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        async with manager.run():
            yield

    async def health(_: Any) -> JSONResponse:
        return JSONResponse({"status": "ok", "sessions": server.session_count()})

    app = Starlette(
        routes=[Route("/mcp", endpoint=front), Route("/health", health)], lifespan=lifespan
    )
    app.state.toolgateway = server
    return app


def _allowed_hosts(host: str, extra: Sequence[str]) -> frozenset[str] | None:
    """Host names a request may carry; None: any (bound to a wildcard address)."""
    if host in _WILDCARDS:
        return None
    return frozenset({*_LOOPBACK_NAMES, host.lower(), *(h.lower() for h in extra)})


class _Front:
    """The checks of the module docstring, as ASGI middleware in front of the SDK."""

    def __init__(
        self,
        inner: ASGIApp,
        server: ToolGatewayServer,
        authenticate: Authenticate,
        *,
        hosts: frozenset[str] | None,
        origins: frozenset[str],
    ) -> None:
        self.inner = inner
        self.server = server
        self.authenticate = authenticate
        self.hosts = hosts
        self.origins = origins
        self.owners = server.owners

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.inner(scope, receive, send)
            return
        headers = _headers(scope)
        refusal = self._refusal(scope, headers)
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        identity = scope[IDENTITY_SCOPE_KEY]
        session_id = headers.get(_SESSION_HEADER)
        if session_id is not None:
            owner = self.owners.get(session_id)
            if owner is not None and owner != identity.subject:
                self.server.guard.refused(
                    session_id, identity, "session-owner", "a session of another identity"
                )
                await _error(404, "Session not found")(scope, receive, send)
                return
        await self.inner(scope, receive, self._watch(identity, session_id, scope, send))

    def _refusal(self, scope: Scope, headers: dict[bytes, str]) -> ASGIApp | None:
        if not self._host_ok(headers.get(b"host", "")):
            return _error(421, "Host not allowed")
        origin = headers.get(b"origin")
        if origin is not None and origin not in self.origins:
            return _error(403, "Origin not allowed")
        authorization = headers.get(b"authorization", "")
        scheme, _, token = authorization.partition(" ")
        bearer = token.strip() if scheme.lower() == "bearer" else None
        client = scope.get("client")
        try:
            identity = self.authenticate(
                Credentials(bearer=bearer or None, client=client[0] if client else None)
            )
        except Unauthorized as exc:
            return _error(401, str(exc), {"www-authenticate": 'Bearer realm="pilothouse"'})
        scope[IDENTITY_SCOPE_KEY] = identity
        return None

    def _host_ok(self, host: str) -> bool:
        if self.hosts is None:
            return True
        name = _hostname(host)
        return name is not None and name in self.hosts

    def _watch(self, identity: Identity, asked: str | None, scope: Scope, send: Send) -> Send:
        """Record the owner of a session this response opens; forget one it closes."""

        async def watched(message: Message) -> None:
            if message["type"] == "http.response.start":
                status = message["status"]
                given = next(
                    (
                        v.decode("latin-1")
                        for k, v in message.get("headers", [])
                        if k == _SESSION_HEADER
                    ),
                    None,
                )
                if given is not None and given not in self.owners and status < 400:
                    self.owners[given] = identity.subject
                if asked is not None and scope["method"] == "DELETE" and status < 400:
                    self.server.forget(asked)
            await send(message)

        return watched


def _headers(scope: Scope) -> dict[bytes, str]:
    """The request's headers (last one wins), values decoded."""
    return {k.lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}


def _hostname(host: str) -> str | None:
    """``name`` of a Host header ``name[:port]`` or ``[v6]:port``, lowercased."""
    host = host.strip().lower()
    if host.startswith("["):
        end = host.find("]")
        return host[1:end] if end > 0 else None
    name = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    if not name:
        return None
    with contextlib.suppress(ValueError):
        return str(ipaddress.ip_address(name))
    return name


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> ASGIApp:
    body = {"jsonrpc": "2.0", "id": None, "error": {"code": -32600, "message": message}}
    return JSONResponse(body, status_code=status, headers=headers)
