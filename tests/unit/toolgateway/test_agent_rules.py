"""The fleet's agents at the tool gateway: an agent's key is held to its allow-list and its
approvals, whatever client it uses; other identities are left to the gateway's own rules."""

from __future__ import annotations

from pathlib import Path

from pilothouse.config.agents import AgentSpec
from pilothouse.governance.governor import Identity
from pilothouse.governance.records import KeyRecord, Organisation, Team
from pilothouse.toolgateway.agent_rules import AgentRules
from pilothouse.toolgateway.guard import ToolSession

from .conftest import World, make_world, tool

READ = tool("files", "read", "Read a file.")
DELETE = tool("files", "delete", "Delete a file.")
PAY = tool("bank", "pay", "Pay someone.")
AGENT = AgentSpec.model_validate(
    {"name": "triage", "model": "chat", "team": "ops", "tools": ["files__read", "bank__*"],
     "approvals": ["bank__pay"]}
)  # fmt: skip


def _identity(kind: str = "agent", name: str = "agent-triage", team: str = "ops") -> Identity:
    org = Organisation(id="org_1", name="acme")
    key = KeyRecord(
        id="key_t",
        digest="d",
        shown="ph-x",
        name=name,
        team_id="team_1",
        kind=kind,
        owner="alice" if kind == "agent" else None,
    )  # type: ignore[arg-type]
    return Identity("key_t", key=key, team=Team(id="team_1", name=team, org_id="org_1"), org=org)


async def _world() -> World:
    world = make_world()
    world.rules.agents = AgentRules([AGENT])
    await world.publish("files", READ, DELETE)
    await world.publish("bank", PAY)
    return world


async def test_agent_key_sees_and_calls_only_its_allow_list() -> None:
    world = await _world()
    session = ToolSession("s1", _identity())
    shown = await world.rules.visible(session, [READ, DELETE, PAY])
    assert [t.federated for t in shown] == ["files__read", "bank__pay"]
    verdict, _ = await world.call(DELETE, {"path": "/"}, session=session)
    assert (verdict.outcome, verdict.rule) == ("deny", "agent-allow-list")
    assert "allow-list of agent 'triage'" in verdict.reason
    assert (await world.call(READ, {"path": "a"}, session=session))[0].outcome == "allow"


async def test_agent_approvals_hold_its_calls_for_a_person() -> None:
    world = await _world()
    session = ToolSession("s1", _identity())
    verdict, _ = await world.call(PAY, {"to": "bob"}, session=session)
    assert (verdict.outcome, verdict.rule) == ("pending", "approval")
    assert verdict.approval_id is not None
    world.store.decide(verdict.approval_id, approved=True)
    again, _ = await world.call(PAY, {"to": "bob"}, session=session)
    assert (again.outcome, again.rule) == ("allow", "approval")


async def test_other_identities_are_not_agents() -> None:
    world = await _world()
    for identity in (
        _identity(kind="user"),  # a person's key with the agent key's name
        _identity(team="other"),  # the agent's key name in another team
        _identity(name="agent-unknown"),
        world.session().identity,  # no key record at all
    ):
        session = ToolSession("s2", identity)
        assert len(await world.rules.visible(session, [READ, DELETE, PAY])) == 3
        assert (await world.call(PAY, {"to": "x"}, session=session))[0].outcome == "allow"


async def test_agent_policy_must_permit_too(tmp_path: Path) -> None:
    cedar = tmp_path / "triage.cedar"
    cedar.write_text(
        '@id("all")\npermit (principal, action, resource);\n'
        '@id("no-big-payments")\nforbid (principal, action == Action::"call", '
        'resource == Tool::"bank__pay") when { context.arguments.usd > 100 };\n'
    )
    agent = AGENT.model_copy(update={"policy": cedar, "approvals": []})
    world = make_world()
    world.rules.agents = AgentRules([agent])
    await world.publish("bank", PAY)
    session = ToolSession("s1", _identity())
    big, _ = await world.call(PAY, {"to": "bob", "usd": 500}, session=session)
    assert (big.outcome, big.rule) == ("deny", "no-big-payments")
    small, _ = await world.call(PAY, {"to": "bob", "usd": 5}, session=session)
    assert (small.outcome, small.rule) == ("allow", "default-permit")  # the gateway's rule
    other, _ = await world.call(PAY, {"to": "bob", "usd": 500}, session=world.session())
    assert other.outcome == "allow"  # not the agent: its policy does not apply
