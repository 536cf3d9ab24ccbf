"""In-memory stand-ins for the tool store and the audit log, for tests of the tool rules.

:class:`FakeToolStore` behaves like ``governance.tool_store.ToolStore`` as far as
:class:`pilothouse.toolgateway.rules.ToolStore` describes it (observe, pins, version,
approvals that are single use and bound to the exact call), plus what an admin does through
the CLI (:meth:`FakeToolStore.approve_server`, :meth:`FakeToolStore.decide`).
:class:`FakeAuditLog` keeps every event in a list.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from itertools import count
from typing import Any

from pilothouse.toolgateway.rules import AuditEvent


def _canonical(value: Mapping[str, Any]) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def definition_digest(definition: Mapping[str, Any]) -> str:
    """SHA-256 of the canonical JSON of a tool definition."""
    return hashlib.sha256(_canonical(definition)).hexdigest()


def args_hash(arguments: Mapping[str, Any]) -> str:
    """SHA-256 of the canonical JSON of a call's arguments."""
    return hashlib.sha256(_canonical(arguments)).hexdigest()


@dataclass(frozen=True, slots=True)
class Pin:
    server: str
    tool: str
    digest: str
    definition: Mapping[str, Any]
    approved_at: float
    approved_by: str


@dataclass(frozen=True, slots=True)
class Approval:
    id: str
    session: str
    principal: str
    tool: str
    args_hash: str
    reason: str
    status: str
    created_at: float
    expires_at: float
    decided_by: str | None = None
    decided_at: float | None = None


class FakeToolStore:
    """See the module docstring. ``calls`` counts method calls (tests of caching)."""

    def __init__(self) -> None:
        self.observed: dict[str, list[Mapping[str, Any]]] = {}
        self._pins: dict[tuple[str, str], Pin] = {}
        self._approvals: dict[str, Approval] = {}
        self._version = 0
        self._ids = count(1)
        self.calls: dict[str, int] = {}
        self.on_request: Callable[[Approval], None] | None = None
        """Called with each new approval (a person who decides at once, in tests)."""

    def _count(self, name: str) -> None:
        self.calls[name] = self.calls.get(name, 0) + 1

    # -- the ToolStore protocol -----------------------------------------------------------

    def observe(self, server: str, definitions: Sequence[Mapping[str, Any]]) -> None:
        self._count("observe")
        self.observed[server] = list(definitions)

    def pins(self) -> dict[tuple[str, str], Pin]:
        self._count("pins")
        return dict(self._pins)

    def version(self) -> int:
        self._count("version")
        return self._version

    def request_approval(
        self,
        session: str,
        principal: str,
        tool: str,
        args_hash: str,
        reason: str,
        ttl_s: float,
        now: float,
    ) -> Approval:
        self._count("request_approval")
        approval = Approval(
            f"apr_{next(self._ids)}",
            session,
            principal,
            tool,
            args_hash,
            reason,
            "pending",
            now,
            now + ttl_s,
        )
        self._approvals[approval.id] = approval
        if self.on_request is not None:
            self.on_request(approval)
        return approval

    def approval(self, id: str) -> Approval | None:
        self._count("approval")
        return self._approvals.get(id)

    def consume(
        self, approval_id: str, session: str, tool: str, args_hash: str, now: float
    ) -> bool:
        self._count("consume")
        approval = self._approvals.get(approval_id)
        if approval is None or approval.status != "approved" or approval.expires_at <= now:
            return False
        if (approval.session, approval.tool, approval.args_hash) != (session, tool, args_hash):
            return False
        self._approvals[approval_id] = replace(approval, status="used")
        return True

    # -- what an admin does ---------------------------------------------------------------

    def approve(self, server: str, tool: str, at: float = 0.0, by: str = "admin") -> Pin:
        """Pin the definition of ``tool`` last observed from ``server``."""
        for definition in self.observed.get(server, []):
            if definition["name"] == tool:
                pin = Pin(server, tool, definition_digest(definition), definition, at, by)
                self._pins[(server, tool)] = pin
                self._version += 1
                return pin
        raise KeyError(f"{server} has not listed {tool}")

    def approve_server(self, server: str, at: float = 0.0, by: str = "admin") -> None:
        for definition in self.observed.get(server, []):
            self.approve(server, str(definition["name"]), at, by)

    def unpin(self, server: str, tool: str) -> None:
        del self._pins[(server, tool)]
        self._version += 1

    def decide(self, approval_id: str, approved: bool, by: str = "alice", at: float = 0.0) -> None:
        approval = self._approvals[approval_id]
        status = "approved" if approved else "denied"
        self._approvals[approval_id] = replace(
            approval, status=status, decided_by=by, decided_at=at
        )

    def approvals(self) -> list[Approval]:
        return list(self._approvals.values())


class FakeAuditLog:
    """Every recorded event, in order."""

    def __init__(self) -> None:
        self.events: list[AuditEvent] = []

    def record(self, event: AuditEvent) -> None:
        self.events.append(event)

    def of(self, kind: str) -> list[AuditEvent]:
        return [e for e in self.events if e.kind == kind]
