"""The MCP server agents talk to: ``tools/list`` and ``tools/call`` through the guard.

:class:`ToolGatewayServer` is a low-level MCP :class:`~mcp.server.lowlevel.Server` (the
official SDK) with two handlers; the HTTP front (:mod:`pilothouse.toolgateway.app`) has
already checked Host/Origin and the caller's identity, and put the
:class:`~pilothouse.governance.governor.Identity` in the request's ASGI scope.

- ``tools/list``: every upstream tool, named ``<server>__<tool>``, filtered by
  ``guard.visible`` for this session.
- ``tools/call``: the name is resolved to an upstream tool (an unknown or unlisted name is
  a tool error, never a guess), ``guard.before_call`` decides: *allow* calls upstream and
  returns what ``guard.after_call`` makes of the result; *deny* returns an error result
  ``refused by <rule>: <reason>`` without calling upstream; *pending* returns an error
  result ``pending approval <id>: <reason>. Call again with the same arguments once it is
  approved.`` (``isError`` true, so an agent does not mistake it for the tool's output;
  the approval id is also in ``structuredContent``).

Sessions. A client on the initialize handshake (revision 2025-11-25 and earlier) gets a
stateful session: its ``Mcp-Session-Id`` is the :class:`ToolSession` id, and when the
upstream tools change (``Upstreams`` watcher → ``guard.tools_changed``) every open session
is sent ``notifications/tools/list_changed``. Revision 2026-07-28 has no sessions: each
request stands alone, so the gateway's session for it is the identity itself
(``identity:<subject>``); its taint and budgets span all of that identity's sessionless
requests, the conservative reading. ``tools/list`` results are marked private and
immediately stale, so no client cache serves one identity's view to another or serves a
view after it changed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import mcp_types as types
from mcp.server.caching import CacheHint
from mcp.server.connection import Connection
from mcp.server.context import CallNext, ServerRequestContext
from mcp.server.lowlevel import NotificationOptions, Server
from mcp.server.models import InitializationOptions
from mcp.shared.exceptions import MCPError

from pilothouse.governance.governor import Identity
from pilothouse.toolgateway.guard import (
    ToolCall,
    ToolDefinition,
    ToolGuard,
    ToolResult,
    ToolSession,
)
from pilothouse.toolgateway.upstream import Upstreams

log = logging.getLogger("pilothouse.toolgateway")

Annotate = Callable[[str, str, str, str, str | None], None]

IDENTITY_SCOPE_KEY = "pilothouse.identity"
"""Where the HTTP front leaves the caller's :class:`Identity` in the ASGI scope."""


@dataclass(frozen=True, slots=True)
class _Live:
    session: ToolSession
    connection: Connection | None


class _Server(Server[Any]):
    """The SDK server, announcing ``tools.listChanged`` on the handshake."""

    def create_initialization_options(
        self,
        notification_options: NotificationOptions | None = None,
        experimental_capabilities: dict[str, dict[str, Any]] | None = None,
        extensions: dict[str, dict[str, Any]] | None = None,
    ) -> InitializationOptions:
        return super().create_initialization_options(
            notification_options or NotificationOptions(tools_changed=True),
            experimental_capabilities,
            extensions,
        )


class ToolGatewayServer:
    """See the module docstring."""

    def __init__(self, guard: ToolGuard, upstreams: Upstreams, *, traced: bool = False) -> None:
        """``traced``: a tracer provider is installed (``tracing:``); each call's decision
        is added to the SDK's ``tools/call`` span."""
        self.guard = guard
        self._annotate: Annotate | None = None
        if traced:
            from pilothouse.telemetry.spans import annotate_tool_call  # the otel extra

            self._annotate = annotate_tool_call
        self.upstreams = upstreams
        self._sessions: dict[str, _Live] = {}
        self.owners: dict[str, str] = {}
        """Session id → the subject of the identity that opened it (kept by the HTTP front,
        dropped here when the session ends)."""
        self.mcp: Server[Any] = _Server(
            "pilothouse-toolgateway",
            title="pilothouse tool gateway",
            instructions="Tools of several MCP servers, named <server>__<tool>.",
            cache_hints={"tools/list": CacheHint(ttl_ms=0, scope="private")},
            on_list_tools=self._list_tools,
            on_call_tool=self._call_tool,
        )
        self.mcp.middleware.append(self._track)
        upstreams.watch(self._tools_changed)

    # -- sessions -------------------------------------------------------------------------

    def session_count(self) -> int:
        return len(self._sessions)

    def forget(self, session_id: str) -> None:
        self._sessions.pop(session_id, None)
        self.owners.pop(session_id, None)

    async def _track(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> Any:
        """Know every stateful session from its first message (``initialize``), so that
        list_changed reaches it and its owner is forgotten however it ends."""
        if ctx.request is not None:
            self._session(ctx)
        return await call_next(ctx)

    def _session(self, ctx: ServerRequestContext[Any, Any]) -> ToolSession:
        identity = _identity(ctx)
        connection = connection_of(ctx)
        session_id = connection.session_id if connection is not None else None
        if session_id is None:
            return ToolSession(id=f"identity:{identity.subject}", identity=identity)
        live = self._sessions.get(session_id)
        if live is not None:
            if live.session.identity.subject != identity.subject:  # the front stops this first
                raise MCPError(types.INVALID_REQUEST, "session not found")
            return live.session
        session = ToolSession(id=session_id, identity=identity)
        self._sessions[session_id] = _Live(session, connection)
        assert connection is not None
        connection.exit_stack.callback(self.forget, session_id)
        return session

    async def _tools_changed(self, server: str, tools: Sequence[ToolDefinition]) -> None:
        await self.guard.tools_changed(server, tools)
        for live in list(self._sessions.values()):
            if live.connection is not None:
                await live.connection.send_tool_list_changed()

    # -- handlers -------------------------------------------------------------------------

    async def _list_tools(
        self, ctx: ServerRequestContext[Any, Any], params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        session = self._session(ctx)
        visible = await self.guard.visible(session, self.upstreams.tools())
        return types.ListToolsResult(tools=[_wire_tool(t) for t in visible])

    async def _call_tool(
        self, ctx: ServerRequestContext[Any, Any], params: types.CallToolRequestParams
    ) -> types.CallToolResult:
        session = self._session(ctx)
        tool = self.upstreams.find(params.name)
        if tool is None:
            return _text_result(f"unknown tool '{params.name}'", error=True)
        call = ToolCall(
            session=session,
            tool=tool,
            arguments=dict(params.arguments or {}),
            labels=self.upstreams.labels(tool),
            request_id=str(ctx.request_id or ""),
        )
        verdict = await self.guard.before_call(call)
        if self._annotate is not None:
            self._annotate(
                tool.server, tool.name, verdict.outcome, verdict.rule, verdict.approval_id
            )
        if verdict.outcome == "deny":
            return _text_result(f"refused by {verdict.rule}: {verdict.reason}", error=True)
        if verdict.outcome == "pending":
            text = (
                f"pending approval {verdict.approval_id}: {verdict.reason}. "
                "Call again with the same arguments once it is approved."
            )
            return _text_result(text, error=True, structured={"approval_id": verdict.approval_id})
        started = time.monotonic()
        result = await self.upstreams.call(tool, call.arguments)
        result = await self.guard.after_call(call, verdict, result, time.monotonic() - started)
        return _wire_result(result)


def _identity(ctx: ServerRequestContext[Any, Any]) -> Identity:
    request = ctx.request
    identity = getattr(request, "scope", {}).get(IDENTITY_SCOPE_KEY) if request else None
    if not isinstance(identity, Identity):  # only reachable if the front is bypassed
        raise MCPError(types.INVALID_REQUEST, "unauthenticated")
    return identity


def connection_of(ctx: ServerRequestContext[Any, Any]) -> Connection | None:
    """The session's connection (its standalone stream carries list_changed).

    The pinned SDK (2.3.0) gives a low-level handler no public path to it; its
    ``ServerSession`` holds it as ``_connection``.
    """
    connection = getattr(ctx.session, "_connection", None)
    return connection if isinstance(connection, Connection) else None


def _wire_tool(tool: ToolDefinition) -> types.Tool:
    return types.Tool.model_validate(
        {
            "name": tool.federated,
            "title": tool.title,
            "description": tool.description,
            "inputSchema": dict(tool.input_schema),
            "outputSchema": dict(tool.output_schema) if tool.output_schema is not None else None,
            "annotations": dict(tool.annotations) if tool.annotations is not None else None,
        }
    )


def _wire_result(result: ToolResult) -> types.CallToolResult:
    return types.CallToolResult.model_validate(
        {
            "content": [dict(block) for block in result.content],
            "structuredContent": dict(result.structured) if result.structured is not None else None,
            "isError": result.is_error,
        }
    )


def _text_result(
    text: str, *, error: bool, structured: dict[str, Any] | None = None
) -> types.CallToolResult:
    return types.CallToolResult(
        content=[types.TextContent(text=text)], structured_content=structured, is_error=error
    )
