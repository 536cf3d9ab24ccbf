"""``pilothouse agent serve``: options, the runtime seam, and how callers are authenticated."""

from __future__ import annotations

from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import click
import pytest
import yaml
from click.testing import CliRunner

from pilothouse.agents.serving import cli
from pilothouse.agents.serving.auth import allow_anyone
from pilothouse.config.fleet import parse_fleet
from pilothouse.controlplane.render.bundle import render_fleet
from pilothouse.controlplane.render.options import RenderOptions
from pilothouse.errors import Unauthorized
from tests.unit.agents.serving import fake_runtime

FLEET: dict[str, Any] = {
    "models": [{"name": "chat", "engine": "sim", "replicas": 1}],
    "gateway": {"port": 8123},
    "agents": [{"name": "triage", "model": "chat"}, {"name": "summariser", "model": "chat"}],
}


def _file(tmp_path: Path, data: dict[str, Any] = FLEET) -> str:
    path = tmp_path / "fleet.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


def test_agent_serve_says_when_the_runtime_is_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cli, "RUNTIME_MODULE", "pilothouse.agents.no_such_runtime")
    result = CliRunner().invoke(cli.agent_group, ["serve", "-f", _file(tmp_path)])
    assert result.exit_code == 1
    assert "the agent runtime (pilothouse.agents.no_such_runtime) is not available" in (
        result.output
    )
    assert "Traceback" not in result.output


def test_agent_serve_unknown_agent_is_a_clear_error(tmp_path: Path) -> None:
    args = ["serve", "-f", _file(tmp_path), "--agent", "nobody"]
    result = CliRunner().invoke(cli.agent_group, args)
    assert result.exit_code == 1
    assert "no agent named nobody (the fleet has summariser, triage)" in result.output


def test_agent_serve_fleet_without_agents(tmp_path: Path) -> None:
    data = {**FLEET, "agents": []}
    result = CliRunner().invoke(cli.agent_group, ["serve", "-f", _file(tmp_path, data)])
    assert result.exit_code == 1
    assert "no agents: section" in result.output


def test_agent_serve_builds_runners_with_each_agents_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cli, "RUNTIME_MODULE", fake_runtime.__name__)
    monkeypatch.setenv("PILOTHOUSE_AGENT_KEY_SUMMARISER", "ph-summariser")
    factory = cli.runner_factory()
    fleet = parse_fleet(FLEET)
    settings = [cli._settings(fleet, spec, None, None, "ph-shared") for spec in fleet.agents]
    runners = [factory(spec, fleet, s) for spec, s in zip(fleet.agents, settings, strict=True)]
    assert [r.name for r in runners] == ["triage", "summariser"]
    assert [s.api_key for s in settings] == ["ph-shared", "ph-summariser"]
    assert settings[0].gateway_url == "http://127.0.0.1:8123"
    assert settings[0].toolgateway_url is None  # the fleet has no tools


def test_agent_serve_accepts_the_rendered_pod_args(tmp_path: Path) -> None:
    rendered = render_fleet(parse_fleet(FLEET), RenderOptions(namespace="ns"))
    [deploy] = [
        m
        for m in rendered.manifests
        if m["kind"] == "Deployment" and m["metadata"]["name"] == "triage-agent"
    ]
    container = deploy["spec"]["template"]["spec"]["containers"][0]
    assert container["command"][-2:] == ["agent", "serve"]
    args = list(container["args"])
    assert args[:2] == ["-f", "/etc/pilothouse/fleet/fleet.yaml"]  # the fleet Secret's mount
    args[1] = _file(tmp_path)
    ctx = cli.agent_serve.make_context("serve", args)
    assert ctx.params["agent_names"] == ("triage",)
    assert (ctx.params["host"], ctx.params["port"]) == ("0.0.0.0", 8000)
    # The env the pod sets are the options' env vars.
    env = {e["name"] for e in container["env"]}
    envvars = {p.envvar for p in cli.agent_serve.params if isinstance(p, click.Option)}
    assert env <= envvars


async def test_agent_serve_authenticates_like_the_gateway(tmp_path: Path) -> None:
    async with AsyncExitStack() as stack:
        assert await cli._authenticate(parse_fleet(FLEET), stack, 0) is allow_anyone
        keyed = parse_fleet({**FLEET, "gateway": {"api_key": "ph-admin"}})
        check = await cli._authenticate(keyed, stack, 0)
        assert check("ph-admin") == "api-key"
        with pytest.raises(Unauthorized):
            check("ph-other")
        with pytest.raises(Unauthorized):
            check(None)
