"""What the tool rules need from the governance store: pins, approvals and the audit log.

``governance.tool_store`` implements these (``ToolStore``, ``AuditLog``); until the rules
are wired to it, :mod:`pilothouse.testing.fake_tool_store` does, in memory. The methods are
synchronous (a database behind them): the rules call the store from a worker thread, and
the audit log's ``record`` is buffered, cheap enough for the request path.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from pilothouse.governance.tool_store import AuditEvent as AuditEvent


class Pin(Protocol):
    """An approved tool definition (``governance.tool_store``)."""

    @property
    def server(self) -> str: ...
    @property
    def tool(self) -> str: ...
    @property
    def digest(self) -> str: ...
    @property
    def approved_at(self) -> float: ...
    @property
    def approved_by(self) -> str: ...


class Approval(Protocol):
    """A person's decision on one exact call (``governance.tool_store``)."""

    @property
    def id(self) -> str: ...
    @property
    def session(self) -> str: ...
    @property
    def principal(self) -> str: ...
    @property
    def tool(self) -> str: ...
    @property
    def args_hash(self) -> str: ...
    @property
    def status(self) -> str: ...
    @property
    def expires_at(self) -> float: ...


class ToolStore(Protocol):
    """Pins and approvals (``governance.tool_store.ToolStore``); synchronous."""

    def observe(self, server: str, definitions: Sequence[Mapping[str, Any]]) -> None: ...
    def pins(self) -> Mapping[tuple[str, str], Pin]: ...
    def version(self) -> int: ...
    def request_approval(
        self,
        session: str,
        principal: str,
        tool: str,
        args_hash: str,
        reason: str,
        ttl_s: float,
        now: float,
    ) -> Approval: ...
    def approval(self, id: str) -> Approval | None: ...
    def consume(
        self, approval_id: str, session: str, tool: str, args_hash: str, now: float
    ) -> bool: ...


class AuditLog(Protocol):
    def record(self, event: AuditEvent) -> None:
        """Synchronous and cheap (buffered): called on the request path."""


class SecretValues(Protocol):
    def values(self) -> Sequence[str]: ...
