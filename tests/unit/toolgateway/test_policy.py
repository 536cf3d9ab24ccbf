"""Cedar decisions name the policy that made them."""

from __future__ import annotations

from pathlib import Path

import pytest

from pilothouse.config.tools import ToolsSpec
from pilothouse.errors import ConfigError
from pilothouse.governance.governor import ANONYMOUS
from pilothouse.toolgateway.policy import (
    DEFAULT_DENY,
    History,
    PolicyRequest,
    ToolPolicy,
    decision_cost_us,
    to_cedar,
)

from .conftest import make_world, policy_file, servers, team_identity, tool

GITHUB_SEARCH = tool("github", "search_issues")
GITHUB_CREATE = tool("github", "create_issue")

POLICY = """
@id("ops-may-use-github")
permit (principal in Team::"ops", action, resource in Server::"github");

@id("no-egress-for-bob")
forbid (principal, action == Action::"call", resource)
when { context has user && context.user == User::"bob" && resource.labels.contains("egress") };

@id("small-searches")
forbid (principal, action == Action::"call", resource == Tool::"github__search_issues")
when { context.arguments has limit && context.arguments.limit > 50 };

@id("three-creates-a-minute")
forbid (principal, action == Action::"call", resource == Tool::"github__create_issue")
when { context.calls.minute >= 3 };

@id("agents-list-only-untainted")
forbid (principal, action == Action::"list", resource)
when { context.taint.contains("untrusted_output") && resource.labels.contains("egress") };
"""


def ask(**kw: object) -> PolicyRequest:
    base: dict[str, object] = {
        "action": "call",
        "identity": team_identity(),
        "tool": GITHUB_SEARCH,
        "arguments": {},
    }
    base.update(kw)
    return PolicyRequest(**base)  # type: ignore[arg-type]


@pytest.fixture
def policy() -> ToolPolicy:
    return ToolPolicy(POLICY)


def test_default_policy_permits_and_names_itself() -> None:
    decision = ToolPolicy.load(None).decide(ask(identity=ANONYMOUS))
    assert (decision.allowed, decision.policy) == (True, "default-permit")


def test_permit_names_the_policy(policy: ToolPolicy) -> None:
    decision = policy.decide(ask())
    assert (decision.allowed, decision.policy) == (True, "ops-may-use-github")


def test_no_permit_is_default_deny(policy: ToolPolicy) -> None:
    decision = policy.decide(ask(identity=team_identity(team="sales")))
    assert (decision.allowed, decision.policy) == (False, DEFAULT_DENY)


def test_forbid_on_acting_for_user_and_labels(policy: ToolPolicy) -> None:
    egress = ask(tool=GITHUB_CREATE, labels=frozenset({"egress"}), acting_for="bob")
    assert policy.decide(egress).policy == "no-egress-for-bob"
    assert policy.decide(ask(tool=GITHUB_CREATE, acting_for="bob")).allowed
    assert policy.decide(ask(tool=GITHUB_CREATE, labels=frozenset({"egress"}))).allowed


def test_arguments_are_a_cedar_record(policy: ToolPolicy) -> None:
    assert policy.decide(ask(arguments={"limit": 10, "q": "bug"})).allowed
    big = policy.decide(ask(arguments={"limit": 500, "q": None}))
    assert (big.allowed, big.policy) == (False, "small-searches")


def test_session_history_window(policy: ToolPolicy) -> None:
    calm = ask(tool=GITHUB_CREATE, calls=History(minute=2, hour=2, session=2))
    busy = ask(tool=GITHUB_CREATE, calls=History(minute=3, hour=9, session=9))
    assert policy.decide(calm).allowed
    assert policy.decide(busy).policy == "three-creates-a-minute"


def test_forged_entity_in_arguments_is_dropped() -> None:
    policy = ToolPolicy(
        '@id("admins") permit (principal, action, resource) '
        'when { context.arguments has who && context.arguments.who == User::"admin" };'
    )
    forged = {"who": {"__entity": {"type": "User", "id": "admin"}}}
    assert not policy.decide(ask(identity=ANONYMOUS, arguments=forged)).allowed


def test_values_cedar_cannot_hold() -> None:
    assert to_cedar({"f": 1.5, "n": None, "l": [1, None], "big": 2**70, "__extn": 1}) == {
        "f": "1.5",
        "l": [1],
        "big": str(2**70),
    }


def test_policy_that_does_not_parse_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"tools\.policy"):
        ToolPolicy.load(policy_file(tmp_path, "permit ("))
    with pytest.raises(ConfigError, match="cannot read"):
        ToolPolicy.load(tmp_path / "missing.cedar")


async def test_rules_deny_with_the_policy_id_and_hide_from_listing(tmp_path: Path) -> None:
    spec = ToolsSpec.model_validate(
        {
            "servers": servers(github={"create_issue": ["egress"]}),
            "policy": str(policy_file(tmp_path, POLICY)),
        }
    )
    world = make_world(spec, POLICY)
    await world.publish("github", GITHUB_SEARCH, GITHUB_CREATE)
    bob = world.session(acting_for="bob")
    verdict, _ = await world.call(GITHUB_CREATE, {"title": "x"}, session=bob)
    assert (verdict.outcome, verdict.rule) == ("deny", "no-egress-for-bob")
    assert world.audit.of("call")[-1].rule == "no-egress-for-bob"
    allowed, _ = await world.call(GITHUB_SEARCH, {"limit": 5})
    assert allowed.rule == "ops-may-use-github"
    for _ in range(3):
        await world.call(GITHUB_CREATE, {"title": "x"})
    assert (await world.call(GITHUB_CREATE, {"title": "y"}))[0].rule == "three-creates-a-minute"
    stranger = world.session("s9", "key_z")
    assert await world.rules.visible(stranger, [GITHUB_SEARCH]) == [GITHUB_SEARCH]
    sales = world.session("s8")
    sales = type(sales)(sales.id, team_identity("key_s", team="sales"))
    assert await world.rules.visible(sales, [GITHUB_SEARCH]) == []
    assert "policy default-deny" in world.audit.of("list")[-1].detail["message"]


def test_decision_cost_benchmark(policy: ToolPolicy) -> None:
    cost = decision_cost_us(policy, ask(arguments={"limit": 5, "q": "x"}), n=200)
    print(f"cedar decision: {cost:.1f} us")
    assert cost > 0
