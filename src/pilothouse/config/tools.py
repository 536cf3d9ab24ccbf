"""The tool gateway's spec: the MCP servers behind ``/mcp`` and the rules every call passes.

``tools:`` at the top of a fleet file (see docs/toolgateway.md)::

    tools:
      servers:
        - name: github                      # tools appear as github__<tool>
          url: https://mcp.example/github/mcp
          headers: {Authorization: "Bearer ${secret:GITHUB_TOKEN}"}
          labels: {search_issues: [untrusted_output], create_issue: [egress]}
        - name: files
          command: [python, -m, files_server]
          env: {ROOT: /srv/data, TOKEN: "${secret:FILES_TOKEN}"}
          labels: {read_file: [sensitive]}
      policy: policies/tools.cedar         # Cedar; default: permit what labels allow
      approvals:
        - tools: [github__create_issue]    # a person approves each call
      budgets: {calls_per_session: 200, calls_per_minute: 60, seconds_per_session: 600}
      secrets: {GITHUB_TOKEN: env:GITHUB_TOKEN, FILES_TOKEN: file:/run/secrets/files}
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Label = Literal["untrusted_output", "egress", "sensitive"]
"""What a tool's calls carry (the rule of two): output an attacker may write, data or
actions leaving the organisation, data that must not leave without a person's approval."""

SERVER_NAME = re.compile(r"^[a-z][a-z0-9-]{0,31}$")
SEPARATOR = "__"
"""Federated tool names are ``<server>__<tool>``."""


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ToolServerSpec(_Spec):
    """One upstream MCP server: a command spoken to over stdio, or a streamable-HTTP URL."""

    name: str
    """Namespace of its tools (lowercase letters, digits, ``-``; at most 32)."""
    command: list[str] | None = None
    """argv of a stdio server, started by the gateway."""
    url: str | None = None
    """A streamable-HTTP MCP endpoint."""
    env: dict[str, str] = Field(default_factory=dict)
    """Environment of a stdio server; ``${secret:NAME}`` is replaced by the secret."""
    headers: dict[str, str] = Field(default_factory=dict)
    """Headers sent to an HTTP server; ``${secret:NAME}`` is replaced by the secret. The
    agent's own credentials are never passed through."""
    labels: dict[str, list[Label]] = Field(default_factory=dict)
    """Tool name (as the server names it) → its labels."""
    timeout_s: float = Field(default=30.0, gt=0)
    """Longest a call to this server may take."""

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not SERVER_NAME.match(value):
            raise ValueError("lowercase letters, digits and '-', starting with a letter, ≤ 32")
        return value

    @model_validator(mode="after")
    def _one_transport(self) -> ToolServerSpec:
        if (self.command is None) == (self.url is None):
            raise ValueError("set exactly one of command (stdio) and url (streamable HTTP)")
        if self.command is not None and not self.command:
            raise ValueError("command must name a program")
        return self


class ApprovalRule(_Spec):
    """Calls that wait for a person: of these tools, or any egress call of a tainted
    session (always on: the rule of two)."""

    tools: list[str] = Field(default_factory=list)
    """Federated names (``github__create_issue``) whose every call needs an approval."""
    wait_s: float = Field(default=0.0, ge=0)
    """How long a call waits for a decision before it returns a pending result the agent
    can poll by calling again (0: return at once)."""
    ttl_s: float = Field(default=3600.0, gt=0)
    """How long an approval stays valid for its exact call."""


class ToolBudgetSpec(_Spec):
    """Tool-call budgets, reserved before the call like token budgets; ``None``: none."""

    calls_per_session: int | None = Field(default=None, gt=0)
    calls_per_minute: int | None = Field(default=None, gt=0)
    """Per identity, across its sessions."""
    seconds_per_session: float | None = Field(default=None, gt=0)
    """Tool time one session may use (each call reserves its server's ``timeout_s``)."""


class ToolsSpec(_Spec):
    """The tool gateway (docs/toolgateway.md)."""

    servers: list[ToolServerSpec] = Field(default_factory=list)
    policy: Path | None = None
    """A Cedar policy file; without one, every identity may list and call every pinned
    tool, subject to labels, approvals and budgets."""
    approvals: list[ApprovalRule] = Field(default_factory=list)
    budgets: ToolBudgetSpec = Field(default_factory=ToolBudgetSpec)
    secrets: dict[str, str] = Field(default_factory=dict)
    """Secret name → where its value is read: ``env:VAR`` or ``file:/path``."""
    allowed_origins: list[str] = Field(default_factory=list)
    """Browser origins allowed to call ``/mcp`` (any other ``Origin``: 403)."""

    @model_validator(mode="after")
    def _unique(self) -> ToolsSpec:
        names = [s.name for s in self.servers]
        if len(set(names)) != len(names):
            raise ValueError("server names must be unique")
        for ref in self.secrets.values():
            if not ref.startswith(("env:", "file:")):
                raise ValueError(f"a secret is read from env:VAR or file:/path, not {ref!r}")
        return self
