"""A Rules with a fake tool store, a fake audit log and a manual clock."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from pilothouse.clock import ManualClock
from pilothouse.config.tools import ToolsSpec
from pilothouse.governance.governor import Identity
from pilothouse.governance.ports import LocalLimits
from pilothouse.governance.records import Organisation, Team
from pilothouse.testing.fake_tool_store import (
    FakeAuditLog,
    FakeToolStore,
    args_hash,
    definition_digest,
)
from pilothouse.toolgateway.guard import ToolCall, ToolDefinition, ToolResult, ToolSession, Verdict
from pilothouse.toolgateway.policy import ToolPolicy
from pilothouse.toolgateway.rules import Rules

SCHEMA = {"type": "object", "properties": {"q": {"type": "string"}}}


def tool(server: str, name: str, description: str = "Does a thing.", **kw: Any) -> ToolDefinition:
    return ToolDefinition(server, name, description, kw.pop("input_schema", SCHEMA), **kw)


def team_identity(subject: str = "key_a", team: str = "ops") -> Identity:
    org = Organisation(id="org_1", name="acme")
    return Identity(subject, team=Team(id="team_1", name=team, org_id="org_1"), org=org)


@dataclass
class Secrets:
    items: list[str] = field(default_factory=list)

    def values(self) -> Sequence[str]:
        return self.items


@dataclass
class World:
    rules: Rules
    store: FakeToolStore
    audit: FakeAuditLog
    clock: ManualClock
    secrets: Secrets

    def session(self, id: str = "s1", subject: str = "key_a", **kw: Any) -> ToolSession:
        return ToolSession(id, team_identity(subject), **kw)

    async def publish(self, server: str, *tools: ToolDefinition, approve: bool = True) -> None:
        await self.rules.tools_changed(server, tools)
        if approve:
            self.store.approve_server(server, at=self.clock.now())

    async def call(
        self,
        t: ToolDefinition,
        arguments: Mapping[str, Any] | None = None,
        session: ToolSession | None = None,
        result: ToolResult | None = None,
    ) -> tuple[Verdict, ToolResult | None]:
        """before_call, then (when allowed) after_call with ``result``."""
        call = ToolCall(session or self.session(), t, arguments or {})
        verdict = await self.rules.before_call(call)
        if verdict.outcome != "allow":
            return verdict, None
        answer = result or ToolResult([{"type": "text", "text": "ok"}])
        return verdict, await self.rules.after_call(call, verdict, answer, 0.5)


def make_world(spec: ToolsSpec | None = None, policy: str | None = None) -> World:
    spec = spec or ToolsSpec()
    store, audit, clock, secrets = FakeToolStore(), FakeAuditLog(), ManualClock(1000.0), Secrets()
    rules = Rules(
        spec,
        store,
        audit,
        policy=ToolPolicy(policy) if policy is not None else ToolPolicy.load(None),
        digest=definition_digest,
        args_hash=args_hash,
        secrets=secrets,
        limits=LocalLimits(),
        clock=clock,
        pin_refresh_s=0.0,
        poll_s=0.01,
    )
    return World(rules, store, audit, clock, secrets)


def servers(**labels: dict[str, list[str]]) -> list[dict[str, Any]]:
    return [{"name": name, "command": ["x"], "labels": ls} for name, ls in labels.items()]


@pytest.fixture
def world() -> World:
    return make_world()


def policy_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "tools.cedar"
    path.write_text(text)
    return path
