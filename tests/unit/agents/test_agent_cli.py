"""``pilothouse agent`` and ``validate`` of agent files; the agent's own key."""

from __future__ import annotations

import json
import stat
import time
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from pilothouse.agents.identity import ensure_agent_key, key_file
from pilothouse.agents.runtime import AgentRuntime
from pilothouse.cli import cli
from pilothouse.config.agents import AgentSpec
from pilothouse.governance.agent_runs import RunBook
from pilothouse.governance.keys import digest
from pilothouse.governance.store import SqlStore
from pilothouse.testing.fake_agent import (
    FakeApprovals,
    FakeModel,
    FakeTools,
    fake_connect,
    text_reply,
    tool_reply,
)

AGENT = {"apiVersion": "pilothouse.dev/v1alpha1", "kind": "Agent", "name": "triage",
         "model": "chat", "team": "support", "tools": ["crm__lookup"]}  # fmt: skip


def _store(state: Path) -> SqlStore:
    store = SqlStore(f"sqlite:///{state / 'governance.db'}")
    store.migrate()
    return store


def test_agent_file_validates(tmp_path: Path) -> None:
    good = tmp_path / "agent.yaml"
    good.write_text(yaml.safe_dump(AGENT))
    result = CliRunner().invoke(cli, ["validate", "-f", str(good)])
    assert result.exit_code == 0, result.output
    assert "valid (agent triage)" in result.output
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({**AGENT, "tools": ["crm"], "budgets": {"steps": 0}}))
    result = CliRunner().invoke(cli, ["validate", "-f", str(bad)])
    assert result.exit_code == 1
    assert "budgets.steps" in result.output


def test_agent_key_is_made_once_kept_private_and_replaced_when_lost(tmp_path: Path) -> None:
    store = _store(tmp_path)
    store.create_org("acme")
    store.create_team("acme", "support")
    spec = AgentSpec.model_validate(AGENT)
    key, made = ensure_agent_key(store, spec, tmp_path, "alice", frozenset({"chat"}))
    path = key_file(tmp_path, "triage")
    assert made
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    record = next(k for k in store.list_keys("support") if k.name == "agent-triage")
    assert (record.kind, record.owner, record.digest) == ("agent", "alice", digest(key))
    assert record.scope.models == frozenset({"chat"})
    again, made_again = ensure_agent_key(store, spec, tmp_path, "alice", frozenset({"chat"}))
    assert (again, made_again) == (key, False)
    path.unlink()
    third, made_third = ensure_agent_key(store, spec, tmp_path, "bob", frozenset({"chat"}))
    assert made_third
    assert third != key
    live = [k for k in store.list_keys("support") if k.name == "agent-triage"]
    assert [k.digest for k in live] == [digest(third)]  # the lost one is revoked
    store.close()


def test_agent_run_without_its_team_is_a_clear_error(tmp_path: Path) -> None:
    _store(tmp_path).close()
    path = tmp_path / "agent.yaml"
    path.write_text(yaml.safe_dump(AGENT))
    result = CliRunner().invoke(
        cli, ["agent", "run", "-f", str(path), "--state-dir", str(tmp_path), "hello"]
    )
    assert result.exit_code == 2, result.output
    assert "team 'support', which does not exist" in result.output
    assert "Traceback" not in result.output


def test_agent_run_of_a_fleet_needs_a_known_agent(tmp_path: Path) -> None:
    fleet = {
        "models": [{"name": "chat", "engine": "sim", "endpoints": ["127.0.0.1:1"]}],
        "agents": [{"name": "a", "model": "chat"}, {"name": "b", "model": "chat"}],
    }
    path = tmp_path / "fleet.yaml"
    path.write_text(yaml.safe_dump(fleet))
    base = ["agent", "run", "-f", str(path), "--state-dir", str(tmp_path)]
    result = CliRunner().invoke(cli, [*base, "task"])
    assert result.exit_code == 2
    assert "choose one with --agent" in result.output
    result = CliRunner().invoke(cli, [*base, "--agent", "c", "task"])
    assert "no agent named 'c'" in result.output


@pytest.mark.parametrize("as_json", [False, True])
async def test_agent_runs_list_and_show(tmp_path: Path, as_json: bool) -> None:
    store = _store(tmp_path)
    spec = AgentSpec.model_validate({**AGENT, "tools": ["crm__*"]})
    model = FakeModel([tool_reply("crm__lookup", {"id": 7}), text_reply("customer 7 is Ada")])
    tools = FakeTools({"crm__lookup": lambda a: "Ada"})
    runtime = AgentRuntime(spec, connect=fake_connect(model, tools), book=RunBook(store),
                           approvals=FakeApprovals())  # fmt: skip
    _ = [s async for s in runtime.run("who is 7?", run_id="r7")]
    store.close()
    listed = CliRunner().invoke(cli, ["agent", "runs", "list", "--state-dir", str(tmp_path)])
    assert listed.exit_code == 0, listed.output
    assert "r7  triage  completed  who is 7?" in listed.output
    args = ["agent", "runs", "show", "r7", "--state-dir", str(tmp_path)]
    shown = CliRunner().invoke(cli, [*args, "--json"] if as_json else args)
    assert shown.exit_code == 0, shown.output
    if as_json:
        body = json.loads(shown.output)
        assert body["result"]["status"] == "completed"
        assert [s["kind"] for s in body["steps"]] == ["model", "tool", "model", "final"]
        assert body["driven_by"] is None  # it finished: nobody holds it
    else:
        assert "crm__lookup" in shown.output
        assert "customer 7 is Ada" in shown.output
        assert "being run by" not in shown.output
    # Another process drives it now: show says who.
    store = _store(tmp_path)
    RunBook(store).take_lease("r7", "host-b:42:cafe", time.time(), time.time() + 30)
    store.close()
    shown = CliRunner().invoke(cli, [*args, "--json"] if as_json else args)
    if as_json:
        assert json.loads(shown.output)["driven_by"]["owner"] == "host-b:42:cafe"
    else:
        assert "being run by host-b:42:cafe" in shown.output
    missing = CliRunner().invoke(cli, ["agent", "runs", "show", "nope", "--state-dir",
                                       str(tmp_path)])  # fmt: skip
    assert missing.exit_code == 2
    assert "no run with id 'nope'" in missing.output


def test_agent_build_runner_for_a_service(tmp_path: Path) -> None:
    from pilothouse.agents.runtime import build_runner
    from pilothouse.agents.serving.settings import RunnerSettings
    from pilothouse.config.fleet import parse_fleet

    store = _store(tmp_path)
    store.create_org("acme")
    store.create_team("acme", "support")
    store.close()
    fleet = parse_fleet(
        {
            "models": [{"name": "chat", "engine": "sim", "endpoints": ["127.0.0.1:1"]}],
            "gateway": {"governance": {"state_dir": str(tmp_path)}},
            "tools": {"servers": [{"name": "crm", "command": ["x"]}]},
            "agents": [{k: v for k, v in AGENT.items() if k not in ("apiVersion", "kind")}],
        }
    )
    spec = fleet.agents[0]
    runner = build_runner(spec, fleet, RunnerSettings("http://127.0.0.1:1"))
    assert runner.name == "triage"
    assert runner.wait_for_approval is False  # a service stops at approvals, resumed later
    assert key_file(tmp_path, "triage").exists()  # its own key, made on first start
