"""The runtime's real connections: the gateway (OpenAI chat completions) and the tool
gateway (MCP), each called with the agent's own key, through the official clients.

- :class:`GatewayModel`: ``openai.AsyncOpenAI`` against the pilothouse gateway's
  ``/v1/chat/completions``. Usage comes from the answer; an answer without ``usage`` is
  charged its upper bound (the prompt's bytes and ``max_tokens``), never nothing.
- :class:`GatewayTools`: the ``mcp`` SDK's ``Client`` over streamable HTTP against the tool
  gateway's ``/mcp``. It connects with ``mode="auto"``: against the tool gateway that is the
  sessionless protocol revision (2026-07-28), where the gateway's session *is* the identity,
  so a run resumed by a new process (same agent key) presents the same session, and an
  approval granted to the call before the restart applies to the same call after it. Each
  call carries the run's call id in ``_meta`` (``io.pilothouse/call-id``) for tool servers
  that deduplicate by it. A pending approval is recognised by the tool gateway's
  ``structuredContent.approval_id`` on an error result.

Errors of either side (refusals, connection failures) become :class:`AgentError`, so the run
is recorded ``failed`` with the reason instead of crashing.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any, cast

import httpx2
import mcp_types as types
import openai
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from opentelemetry import propagate

from pilothouse.agents.clients import ModelReply, ToolCallRequest, ToolOutcome, ToolSpec
from pilothouse.errors import AgentError

CALL_ID_META = "io.pilothouse/call-id"


def v1_url(gateway: str) -> str:
    """The OpenAI base URL of a gateway given as ``http://host:port`` (or with ``/v1``)."""
    base = gateway.rstrip("/")
    return base if base.endswith("/v1") else base + "/v1"


def mcp_url(tool_gateway: str) -> str:
    """The ``/mcp`` endpoint of a tool gateway given as ``http://host:port`` (or with it)."""
    base = tool_gateway.rstrip("/")
    return base if base.endswith("/mcp") else base + "/mcp"


class GatewayModel:
    """Chat completions of one model through the pilothouse gateway."""

    def __init__(self, client: openai.AsyncOpenAI, model: str) -> None:
        self.client = client
        self.model = model

    async def complete(
        self,
        messages: Sequence[Mapping[str, Any]],
        tools: Sequence[ToolSpec],
        *,
        max_tokens: int,
        temperature: float,
    ) -> ModelReply:
        extra: dict[str, Any] = {"tools": [t.as_openai() for t in tools]} if tools else {}
        carrier: dict[str, str] = {}
        propagate.inject(carrier)  # the run's span, when tracing is on: the gateway continues it
        try:
            answer = await self.client.chat.completions.create(
                model=self.model,
                messages=[dict(m) for m in messages],  # type: ignore[misc]
                max_tokens=max_tokens,
                temperature=temperature,
                extra_headers=carrier or None,
                **extra,
            )
        except openai.APIStatusError as exc:
            raise AgentError(f"the gateway answered {exc.status_code}: {_message(exc)}") from exc
        except openai.APIError as exc:
            raise AgentError(f"the gateway could not be reached: {exc}") from exc
        if not answer.choices:
            raise AgentError("the gateway's answer has no choices")
        choice = answer.choices[0]
        calls = tuple(
            ToolCallRequest(call.id, call.function.name, call.function.arguments or "{}")
            for call in choice.message.tool_calls or []
            if call.type == "function"
        )
        usage = answer.usage
        if usage is None:
            prompt = len(json.dumps(list(messages), ensure_ascii=False).encode())
            prompt_tokens, completion_tokens = prompt, max_tokens
        else:
            prompt_tokens, completion_tokens = usage.prompt_tokens, usage.completion_tokens
        return ModelReply(
            content=choice.message.content or "",
            tool_calls=calls,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            finish_reason=choice.finish_reason or "stop",
        )


def _message(exc: openai.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, dict):
        error = body.get("error", body)
        if isinstance(error, dict) and "message" in error:
            return str(error["message"])
    return exc.message


class GatewayTools:
    """The tool gateway's tools, through one MCP client."""

    def __init__(self, client: Client) -> None:
        self.client = client

    async def list_tools(self) -> list[ToolSpec]:
        found: list[ToolSpec] = []
        cursor: str | None = None
        try:
            while True:
                page = await self.client.list_tools(cursor=cursor)
                found.extend(_spec(tool) for tool in page.tools)
                cursor = page.next_cursor
                if not cursor:
                    return found
        except Exception as exc:  # the SDK's and httpx's errors alike
            raise AgentError(f"the tool gateway did not list its tools: {exc}") from exc

    async def call(self, name: str, arguments: Mapping[str, Any], call_id: str) -> ToolOutcome:
        meta = cast(types.RequestParamsMeta, {CALL_ID_META: call_id})
        try:
            result = await self.client.call_tool(name, dict(arguments), meta=meta)
        except Exception as exc:  # the SDK's and httpx's errors alike
            raise AgentError(f"the tool gateway failed calling {name}: {exc}") from exc
        text = "\n".join(
            block.text for block in result.content if isinstance(block, types.TextContent)
        )
        if not text and result.structured_content is not None:
            text = json.dumps(result.structured_content)
        structured = result.structured_content or {}
        approval = structured.get("approval_id") if result.is_error else None
        return ToolOutcome(text, bool(result.is_error), str(approval) if approval else None)


def _spec(tool: types.Tool) -> ToolSpec:
    hints = tool.annotations
    return ToolSpec(
        name=tool.name,
        description=tool.description or "",
        input_schema=dict(tool.input_schema or {"type": "object"}),
        read_only=bool(hints is not None and hints.read_only_hint),
        idempotent=bool(hints is not None and hints.idempotent_hint),
    )


class NoTools:
    """An agent without tools (no tool gateway is contacted)."""

    async def list_tools(self) -> list[ToolSpec]:
        return []

    async def call(self, name: str, arguments: Mapping[str, Any], call_id: str) -> ToolOutcome:
        return ToolOutcome(f"no tool '{name}'", is_error=True)


@contextlib.asynccontextmanager
async def tool_gateway(url: str, key: str) -> AsyncIterator[GatewayTools]:
    """An MCP client of the tool gateway at ``url`` (``…/mcp``, added when missing) holding
    ``key``."""
    url = mcp_url(url)
    headers = {"Authorization": f"Bearer {key}"}
    async with contextlib.AsyncExitStack() as stack:
        try:
            http = await stack.enter_async_context(
                httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(30, read=300))
            )
            transport = streamable_http_client(url, http_client=http)
            client = await stack.enter_async_context(Client(transport, mode="auto", cache=None))
        except Exception as exc:  # the SDK's and httpx's errors alike
            raise AgentError(f"the tool gateway at {url} is out of reach: {exc}") from exc
        yield GatewayTools(client)


@contextlib.asynccontextmanager
async def model_gateway(url: str, key: str, model: str) -> AsyncIterator[GatewayModel]:
    """The OpenAI client of the gateway at ``url`` holding ``key``, for ``model``."""
    async with openai.AsyncOpenAI(base_url=v1_url(url), api_key=key, max_retries=2) as client:
        yield GatewayModel(client, model)
