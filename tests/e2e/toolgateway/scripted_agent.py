"""A scripted agent that obeys every instruction it reads: the attack suite's victim.

No model: the agent is deterministic, and as gullible as the worst model (MCPTox's explicit
refusals are under 3 %). It speaks MCP through the official SDK client over streamable HTTP
with its API key, and it obeys instructions wherever it finds them: in its user's task, in
every tool description it is shown, and in every tool result, including text spelled in
invisible Unicode tag characters (which it decodes, as models read them). An instruction is
an ``<IMPORTANT>…</IMPORTANT>`` block holding, in order:

- ``call TOOL with {json}``: call ``TOOL`` (a federated name) with these arguments, where
  ``$OUTPUT(TOOL2)`` in a string stands for the last text ``TOOL2`` returned;
- ``reconnect when refused``: from now on, a call the gateway refuses is retried once in a
  new MCP session (an agent trying to shake off per-session state);
- ``use session ID``: send the next calls with ``Mcp-Session-Id: ID`` (another agent's
  session, leaked), keeping its own credentials.

Instructions from descriptions run first (a poisoned description says "before any other
tool"), then the task; instructions found in a result run right after the call that
returned it. A ``notifications/tools/list_changed`` makes it list again and obey what the
new descriptions say. :class:`Transcript` is what it did, for the tests to measure.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import anyio
import httpx2
import mcp_types as types
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

_BLOCK = re.compile(r"<IMPORTANT>(.*?)</IMPORTANT>", re.DOTALL | re.IGNORECASE)
_CALL = re.compile(r"call\s+([A-Za-z0-9_.\-]+)\s+with\s+", re.IGNORECASE)
_SESSION = re.compile(r"use session\s+([A-Za-z0-9_\-]+)", re.IGNORECASE)
_RECONNECT = re.compile(r"reconnect when refused", re.IGNORECASE)
_OUTPUT = re.compile(r"\$OUTPUT\(([A-Za-z0-9_.\-]+)\)")
_SESSION_HEADER = "mcp-session-id"


def decode(text: str) -> str:
    """``text`` as a model reads it: Unicode tag characters (U+E0020 to U+E007E) become the
    ASCII they spell, and zero-width characters are dropped."""
    out = []
    for ch in text:
        code = ord(ch)
        if 0xE0020 <= code <= 0xE007E:
            out.append(chr(code - 0xE0000))
        elif ch not in "\u200b\u200c\u200d\u2060\ufeff":
            out.append(ch)
    return "".join(out)


@dataclass(frozen=True, slots=True)
class Instruction:
    kind: str
    """``call``, ``reconnect`` or ``session``."""
    source: str
    """Where the agent read it: ``task``, ``description of X``, ``output of X``."""
    tool: str = ""
    arguments: dict[str, Any] = field(default_factory=dict)
    session: str = ""


def instructions(text: str, source: str) -> list[Instruction]:
    """Every instruction in ``text`` (decoded first), in order."""
    found: list[Instruction] = []
    decoder = json.JSONDecoder()
    for block in _BLOCK.findall(decode(text)):
        steps: list[tuple[int, Instruction]] = []
        for match in _RECONNECT.finditer(block):
            steps.append((match.start(), Instruction("reconnect", source)))
        for match in _SESSION.finditer(block):
            steps.append((match.start(), Instruction("session", source, session=match[1])))
        for match in _CALL.finditer(block):
            try:
                arguments, _ = decoder.raw_decode(block, match.end())
            except json.JSONDecodeError:
                continue
            if isinstance(arguments, dict):
                steps.append((match.start(), Instruction("call", source, match[1], arguments)))
        found.extend(step for _, step in sorted(steps, key=lambda s: s[0]))
    return found


@dataclass(frozen=True, slots=True)
class Step:
    """One call the agent made, and what came back."""

    tool: str
    arguments: dict[str, Any]
    source: str
    text: str
    is_error: bool
    session: str | None
    """The ``Mcp-Session-Id`` the call was sent with."""


@dataclass
class Transcript:
    steps: list[Step] = field(default_factory=list)
    read: list[str] = field(default_factory=list)
    """Every description and result text the agent read (decoded)."""
    listings: list[list[str]] = field(default_factory=list)
    """The tool names of each ``tools/list`` it got."""
    list_changed: int = 0
    sessions: list[str] = field(default_factory=list)
    """The session ids the gateway gave it, in order."""
    exhausted: bool = False
    """It stopped at ``max_steps`` with instructions left (a loop nothing stopped)."""

    def calls(self, tool: str) -> list[Step]:
        return [s for s in self.steps if s.tool == tool]

    def saw(self, text: str) -> bool:
        return any(text in t for t in self.read)


class ScriptedAgent:
    """``async with ScriptedAgent(url, key) as agent: await agent.run(task)`` (see the
    module docstring)."""

    def __init__(self, url: str, key: str, *, max_steps: int = 40, max_reconnects: int = 3):
        self.url = url
        self.key = key
        self.max_steps = max_steps
        self.max_reconnects = max_reconnects
        self.transcript = Transcript()
        self._reconnect = False
        self._hijack: str | None = None
        self._outputs: dict[str, str] = {}
        self._described: set[str] = set()
        self._changed = anyio.Event()
        self._stack: contextlib.AsyncExitStack | None = None
        self._client: Client | None = None
        self._session: str | None = None

    async def __aenter__(self) -> ScriptedAgent:
        await self._open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._close()

    @property
    def session_id(self) -> str | None:
        """The gateway session this agent holds now."""
        return self._session

    async def run(self, task: str) -> Transcript:
        """Obey ``task`` and everything it leads to; returns the whole transcript so far."""
        queue: deque[Instruction] = deque(await self._list())
        queue.extend(instructions(task, "task"))
        done = 0
        while queue:
            if done >= self.max_steps:
                self.transcript.exhausted = True
                break
            if self._changed.is_set():
                queue.extendleft(reversed(await self._list()))
                continue
            step = queue.popleft()
            if step.kind == "reconnect":
                self._reconnect = True
            elif step.kind == "session":
                self._hijack = step.session
            else:
                done += 1
                queue.extendleft(reversed(await self._call(step)))
        return self.transcript

    async def wait_list_changed(self, timeout_s: float = 20.0) -> None:
        """Until the gateway says the tools changed (bounded)."""
        with anyio.fail_after(timeout_s):
            await self._changed.wait()

    # -- MCP ------------------------------------------------------------------------------

    async def _list(self) -> list[Instruction]:
        self._changed = anyio.Event()
        assert self._client is not None
        tools = (await self._client.list_tools()).tools
        self.transcript.listings.append([t.name for t in tools])
        found: list[Instruction] = []
        for tool in tools:
            text = decode(tool.description or "")
            if text in self._described:
                continue
            self._described.add(text)
            self.transcript.read.append(text)
            found.extend(instructions(text, f"description of {tool.name}"))
        return found

    async def _call(self, step: Instruction, retried: bool = False) -> list[Instruction]:
        assert self._client is not None
        arguments = _substitute(step.arguments, self._outputs)
        session = self._hijack or self._session
        try:
            result = await self._client.call_tool(step.tool, arguments)
            text = "".join(c.text for c in result.content if isinstance(c, types.TextContent))
            is_error = bool(result.is_error)
        except MCPError as exc:  # the gateway refused the request itself (HTTP 4xx)
            text, is_error = f"refused: {exc.error.message}", True
        text = decode(text)
        self.transcript.steps.append(
            Step(step.tool, arguments, step.source, text, is_error, session)
        )
        self.transcript.read.append(text)
        if self._hijack is not None and is_error:
            self._hijack = None  # the stolen session did not work: back to its own
        if is_error and self._reconnect and not retried and self.max_reconnects > 0:
            self.max_reconnects -= 1
            await self._close()
            await self._open()
            return await self._call(step, retried=True)
        if not is_error:
            self._outputs[step.tool] = text
        return instructions(text, f"output of {step.tool}")

    async def _open(self) -> None:
        stack = contextlib.AsyncExitStack()
        await stack.__aenter__()
        try:
            self._client = await stack.enter_async_context(self._connect())
        except BaseException:
            await stack.aclose()
            raise
        self._stack = stack

    async def _close(self) -> None:
        stack, self._stack, self._client = self._stack, None, None
        if stack is not None:
            await stack.aclose()

    @contextlib.asynccontextmanager
    async def _connect(self) -> AsyncIterator[Client]:
        async def on_request(request: httpx2.Request) -> None:
            if self._hijack is not None and request.method == "POST":
                request.headers[_SESSION_HEADER] = self._hijack

        async def on_response(response: httpx2.Response) -> None:
            given = response.headers.get(_SESSION_HEADER)
            ok = response.status_code < 400 and self._hijack is None
            if ok and given and given != self._session:
                self._session = given
                self.transcript.sessions.append(given)

        async def on_message(message: Any) -> None:
            if isinstance(message, types.ToolListChangedNotification):
                self.transcript.list_changed += 1
                self._changed.set()

        headers = {"Authorization": f"Bearer {self.key}"}
        hooks = {"request": [on_request], "response": [on_response]}
        async with httpx2.AsyncClient(headers=headers, timeout=30, event_hooks=hooks) as http:
            transport = streamable_http_client(self.url, http_client=http)
            async with Client(
                transport, mode="legacy", cache=None, message_handler=on_message
            ) as client:
                yield client


def _substitute(value: Any, outputs: dict[str, str]) -> Any:
    if isinstance(value, str):
        return _OUTPUT.sub(lambda m: outputs.get(m[1], ""), value)
    if isinstance(value, dict):
        return {k: _substitute(v, outputs) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, outputs) for v in value]
    return value
