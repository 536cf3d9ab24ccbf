"""build_rules wires the spec, governance's limits and wall clock, and the policy file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pilothouse.config.governance import GovernanceSpec
from pilothouse.config.tools import ToolsSpec
from pilothouse.errors import ConfigError
from pilothouse.governance.directory import Directory
from pilothouse.governance.governor import Governor
from pilothouse.governance.metrics import GovernanceMetrics
from pilothouse.governance.ports import LocalBudgets, LocalLimits
from pilothouse.governance.service import Governance
from pilothouse.testing.fake_tool_store import (
    FakeAuditLog,
    FakeToolStore,
    args_hash,
    definition_digest,
)
from pilothouse.toolgateway.guard import ToolCall, ToolGuard, ToolSession
from pilothouse.toolgateway.rules import Rules, build_rules

from .conftest import Secrets, policy_file, servers, team_identity, tool


def governance(limits: LocalLimits) -> Governance:
    governor = Governor(
        GovernanceSpec(),
        Directory(),
        limits,
        LocalBudgets("tokens"),
        LocalBudgets("usd"),
        None,
        GovernanceMetrics(),
        wall=lambda: 5000.0,
    )
    unused: Any = None
    return Governance(governor, unused, unused, Path("."))


def build(spec: ToolsSpec, limits: LocalLimits) -> tuple[Rules, FakeToolStore]:
    store = FakeToolStore()
    rules = build_rules(
        spec,
        governance(limits),
        Secrets(),
        store=store,
        audit=FakeAuditLog(),
        digest=definition_digest,
        args_hash=args_hash,
    )
    return rules, store


async def test_built_rules_use_the_policy_file_and_governance_limits(tmp_path: Path) -> None:
    text = '@id("only-search") permit (principal, action, resource == Tool::"gh__search");'
    spec = ToolsSpec.model_validate(
        {
            "servers": servers(gh={}),
            "policy": str(policy_file(tmp_path, text)),
            "budgets": {"calls_per_minute": 5},
        }
    )
    limits = LocalLimits()
    rules, store = build(spec, limits)
    guard: ToolGuard = rules
    search, create = tool("gh", "search"), tool("gh", "create")
    await guard.tools_changed("gh", [search, create])
    store.approve_server("gh")
    await guard.tools_changed("gh", [search, create])  # re-reads the pins at once
    call = ToolCall(ToolSession("s1", team_identity()), search, {})
    assert (await guard.before_call(call)).rule == "only-search"
    assert limits.core.usage("tools:key_a", 5000.0)[0] == 1
    assert (await guard.before_call(ToolCall(call.session, create, {}))).rule == "default-deny"


def test_bad_policy_file_fails_at_build(tmp_path: Path) -> None:
    spec = ToolsSpec(policy=policy_file(tmp_path, "forbid ("))
    with pytest.raises(ConfigError):
        build(spec, LocalLimits())
