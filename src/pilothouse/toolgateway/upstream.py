"""The MCP servers behind the gateway: connected, listed, called, reconnected.

:class:`Upstreams` keeps one official-SDK :class:`mcp.Client` per server of
``tools.servers``: a stdio command started with its ``env`` (``${secret:NAME}``
substituted, merged over the SDK's short list of safe variables, so the gateway's own
environment does not leak into tool servers), or a streamable-HTTP URL with its
``headers`` (substituted). Nothing an agent sent is ever forwarded: an agent's
``Authorization`` ends at the gateway (MCP forbids token passthrough), and upstream
requests carry only what the spec names.

Each server has a supervisor task. It connects with the initialize handshake (every MCP
server speaks it, and its session carries ``notifications/tools/list_changed``), lists the
tools (all pages) and hands the listing to the watchers (the endpoint, which tells the
guard and the agents). A ``list_changed`` re-lists. A failed ping or a broken transport
ends the connection; the task reconnects with backoff, and meanwhile the server lists no
tools and its calls return an error result. A server that is down when the gateway starts
does not stop it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import anyio
import mcp_types as types
from mcp import Client
from mcp.client.stdio import StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from mcp.shared.exceptions import MCPError

from pilothouse.config.tools import Label, ToolServerSpec, ToolsSpec
from pilothouse.toolgateway.guard import ToolDefinition, ToolResult
from pilothouse.toolgateway.secrets import Secrets

log = logging.getLogger("pilothouse.toolgateway.upstream")

Watcher = Callable[[str, Sequence[ToolDefinition]], Awaitable[None]]
"""Told each server's listing: at connect, after list_changed, and ``[]`` when it drops."""

_MAX_PAGES = 100


@dataclass(slots=True, eq=False)
class _Server:
    spec: ToolServerSpec
    client: Client | None = None
    tools: dict[str, ToolDefinition] = field(default_factory=dict)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    stale: bool = False
    broken: bool = False
    attempted: asyncio.Event = field(default_factory=asyncio.Event)
    """Set once the first connection attempt ended (connected or not)."""


class Upstreams:
    """See the module docstring. Use as ``async with Upstreams(spec, secrets) as up``,
    after the watchers (:meth:`watch`) are registered."""

    def __init__(
        self,
        spec: ToolsSpec,
        secrets: Secrets,
        *,
        ping_interval_s: float = 10.0,
        retry_s: float = 0.5,
        max_retry_s: float = 30.0,
    ) -> None:
        self.spec = spec
        self._secrets = secrets
        self._servers = {s.name: _Server(s) for s in spec.servers}
        self._watchers: list[Watcher] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._ping_s = ping_interval_s
        self._retry_s = retry_s
        self._max_retry_s = max_retry_s
        # Checked here, not at the first connection: a bad reference stops the start.
        for server in spec.servers:
            self._connection_args(server)

    def watch(self, watcher: Watcher) -> None:
        """Call ``watcher`` with every new listing of every server."""
        self._watchers.append(watcher)

    async def start(self, ready_timeout_s: float = 30.0) -> None:
        """Start every server's supervisor; return once each first attempt has ended (or
        after ``ready_timeout_s``), so the first ``tools/list`` sees what is up."""
        for state in self._servers.values():
            self._tasks.append(asyncio.create_task(self._supervise(state), name=state.spec.name))
        waits = [s.attempted.wait() for s in self._servers.values()]
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(*waits), ready_timeout_s)

    async def aclose(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()

    async def __aenter__(self) -> Upstreams:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # -- what is there --------------------------------------------------------------------

    def tools(self) -> list[ToolDefinition]:
        """Every tool of every connected server, servers in spec order."""
        return [t for s in self._servers.values() for t in s.tools.values()]

    def find(self, federated: str) -> ToolDefinition | None:
        """The tool agents call ``<server>__<tool>``, if its server lists it now."""
        server, sep, name = federated.partition("__")
        state = self._servers.get(server)
        return state.tools.get(name) if sep and state is not None else None

    def labels(self, tool: ToolDefinition) -> frozenset[Label]:
        state = self._servers.get(tool.server)
        return frozenset(state.spec.labels.get(tool.name, ())) if state else frozenset()

    def connected(self, server: str) -> bool:
        state = self._servers.get(server)
        return state is not None and state.client is not None

    # -- calling --------------------------------------------------------------------------

    async def call(self, tool: ToolDefinition, arguments: Mapping[str, Any]) -> ToolResult:
        """Call ``tool`` upstream within its server's ``timeout_s``. Failures (server down,
        timeout, a protocol error) come back as error results, as MCP reports tool-level
        failures; they never carry anything but the server's name and the failure."""
        state = self._servers[tool.server]
        client = state.client
        if client is None:
            return _error(f"tool server '{tool.server}' is not connected; try again later")
        try:
            with anyio.fail_after(state.spec.timeout_s):
                result = await client.call_tool(tool.name, dict(arguments))
        except TimeoutError:
            return _error(f"tool server '{tool.server}' did not answer in {state.spec.timeout_s} s")
        except MCPError as exc:
            return _error(f"tool server '{tool.server}' refused the call: {exc.error.message}")
        except (anyio.ClosedResourceError, anyio.BrokenResourceError, OSError) as exc:
            self._break(state)
            return _error(f"tool server '{tool.server}' connection failed ({type(exc).__name__})")
        return ToolResult(
            content=[
                c.model_dump(mode="json", by_alias=True, exclude_none=True) for c in result.content
            ],
            structured=result.structured_content,
            is_error=result.is_error,
        )

    # -- supervision ----------------------------------------------------------------------

    async def _supervise(self, state: _Server) -> None:
        delay = self._retry_s
        while True:
            connected_at = time.monotonic()
            try:
                async with self._connect(state) as client:
                    state.client = client
                    await self._relist(state)
                    state.attempted.set()
                    delay = self._retry_s
                    await self._serve(state, client)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the supervisor's boundary: log, then reconnect
                log.warning("tool server %s: %s", state.spec.name, _describe(exc))
            finally:
                state.client = None
                state.broken = state.stale = False
            state.attempted.set()
            if state.tools:
                state.tools = {}
                await self._tell(state.spec.name, [])
            if time.monotonic() - connected_at > self._max_retry_s:
                delay = self._retry_s
            await asyncio.sleep(delay)
            delay = min(delay * 2, self._max_retry_s)

    async def _serve(self, state: _Server, client: Client) -> None:
        """Follow list_changed and ping until the connection breaks."""
        while True:
            woken = False
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(state.wake.wait(), self._ping_s)
                woken = True
            state.wake.clear()
            if state.broken:
                return
            if state.stale:
                state.stale = False
                await self._relist(state)
            elif not woken:
                with anyio.fail_after(state.spec.timeout_s):
                    await client.send_ping()

    def _break(self, state: _Server) -> None:
        state.broken = True
        state.wake.set()

    async def _relist(self, state: _Server) -> None:
        assert state.client is not None
        tools: list[ToolDefinition] = []
        cursor: str | None = None
        for _ in range(_MAX_PAGES):
            with anyio.fail_after(state.spec.timeout_s):
                page = await state.client.list_tools(cursor=cursor)
            tools.extend(_definition(state.spec.name, t) for t in page.tools)
            cursor = page.next_cursor
            if not cursor:
                break
        state.tools = {t.name: t for t in tools}
        await self._tell(state.spec.name, tools)

    async def _tell(self, server: str, tools: Sequence[ToolDefinition]) -> None:
        for watcher in self._watchers:
            await watcher(server, tools)

    @contextlib.asynccontextmanager
    async def _connect(self, state: _Server) -> AsyncIterator[Client]:
        spec = state.spec

        async def on_message(message: types.ServerNotification | Exception) -> None:
            if isinstance(message, types.ToolListChangedNotification):
                state.stale = True
                state.wake.set()
            elif isinstance(message, Exception):
                log.warning("tool server %s: %s", spec.name, _describe(message))
                self._break(state)

        args = self._connection_args(spec)
        async with contextlib.AsyncExitStack() as stack:
            if isinstance(args, StdioServerParameters):
                target: Any = args
            else:
                http = await stack.enter_async_context(create_mcp_http_client(headers=args))
                assert spec.url is not None
                target = streamable_http_client(spec.url, http_client=http)
            client = Client(target, mode="legacy", cache=None, message_handler=on_message)
            yield await stack.enter_async_context(client)

    def _connection_args(self, spec: ToolServerSpec) -> StdioServerParameters | dict[str, str]:
        where = f"tools.servers.{spec.name}"
        if spec.command is not None:
            env = self._secrets.substitute_all(spec.env, f"{where}.env")
            return StdioServerParameters(command=spec.command[0], args=spec.command[1:], env=env)
        return self._secrets.substitute_all(spec.headers, f"{where}.headers")


def _definition(server: str, tool: types.Tool) -> ToolDefinition:
    annotations = tool.annotations
    return ToolDefinition(
        server=server,
        name=tool.name,
        description=tool.description,
        input_schema=tool.input_schema,
        output_schema=tool.output_schema,
        title=tool.title,
        annotations=(
            annotations.model_dump(mode="json", by_alias=True, exclude_none=True)
            if annotations is not None
            else None
        ),
    )


def _error(text: str) -> ToolResult:
    return ToolResult(content=[{"type": "text", "text": text}], is_error=True)


def _describe(exc: BaseException) -> str:
    """One line for the log: exception groups (anyio task groups) unwrapped."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return f"{type(exc).__name__}: {exc}"
