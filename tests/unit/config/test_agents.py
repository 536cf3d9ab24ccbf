"""The Agent spec: names, tool patterns, sub-agent graph, and the fleet's cross-checks."""

from __future__ import annotations

from pathlib import Path

import pytest

from pilothouse.config.agents import AgentSpec, load_agent
from pilothouse.config.fleet import parse_fleet
from pilothouse.errors import ConfigError

MODELS = [{"name": "chat", "engine": "sim"}]
TOOLS = {"servers": [{"name": "crm", "url": "http://127.0.0.1:9/mcp"}]}


def _fleet(agents: list[dict[str, object]], tools: object = TOOLS) -> object:
    return parse_fleet({"models": MODELS, "tools": tools, "agents": agents})


def test_a_fleet_agent_with_allow_list_and_sub_agent() -> None:
    fleet = _fleet(
        [
            {
                "name": "triage",
                "model": "chat",
                "tools": ["crm__*"],
                "approvals": ["crm__write"],
                "sub_agents": [{"name": "summariser", "budget_share": 0.25}],
            },
            {"name": "summariser", "model": "chat"},
        ]
    )
    triage = fleet.agents[0]  # type: ignore[attr-defined]
    assert triage.allows("crm__lookup")
    assert not triage.allows("web__fetch")
    assert triage.needs_approval("crm__write")
    assert not triage.needs_approval("crm__lookup")


@pytest.mark.parametrize(
    ("agents", "tools", "where"),
    [
        ([{"name": "a", "model": "nope"}], TOOLS, "agents[0].model"),
        ([{"name": "a", "model": "chat", "tools": ["web__get"]}], TOOLS, "agents[0].tools[0]"),
        ([{"name": "a", "model": "chat", "tools": ["crm__x"]}], None, "agents[0].tools"),
        ([{"name": "a", "model": "chat", "tools": ["crm"]}], TOOLS, "agents[0].tools[0]"),
        ([{"name": "A_b", "model": "chat"}], TOOLS, "agents[0].name"),
        (
            [{"name": "a", "model": "chat", "sub_agents": [{"name": "ghost"}]}],
            TOOLS,
            "agents[0].sub_agents[0].name",
        ),
        (
            [
                {"name": "a", "model": "chat", "sub_agents": [{"name": "b"}]},
                {"name": "b", "model": "chat", "sub_agents": [{"name": "a"}]},
            ],
            TOOLS,
            "agents[0].sub_agents",
        ),
        ([{"name": "a", "model": "chat"}, {"name": "a", "model": "chat"}], TOOLS, "agents"),
    ],
)
def test_bad_agents_are_named_by_path(
    agents: list[dict[str, object]], tools: object, where: str
) -> None:
    with pytest.raises(ConfigError) as err:
        _fleet(agents, tools)
    assert any(p.startswith(f"{where}:") for p in err.value.problems), err.value.problems


def test_an_agent_file_of_its_own(tmp_path: Path) -> None:
    path = tmp_path / "agent.yaml"
    path.write_text("kind: Agent\nname: helper\nmodel: chat\nbudgets: {tokens: 1000}\n")
    agent = load_agent(path)
    assert isinstance(agent, AgentSpec)
    assert agent.budgets.tokens == 1000
    path.write_text("kind: Agent\nname: helper\nmodel: chat\nbudget: {}\n")
    with pytest.raises(ConfigError, match="budget: unknown field"):
        load_agent(path)
