"""Stands in for ``pilothouse.agents.runtime`` in the CLI tests."""

from __future__ import annotations

from pilothouse.agents.serving.settings import RunnerSettings
from pilothouse.config.agents import AgentSpec
from pilothouse.config.fleet import FleetSpec
from pilothouse.testing.fake_agent_runner import FakeAgentRunner, ScriptedStep

BUILT: list[tuple[str, RunnerSettings]] = []


def build_runner(spec: AgentSpec, fleet: FleetSpec, settings: RunnerSettings) -> FakeAgentRunner:
    BUILT.append((spec.name, settings))
    return FakeAgentRunner(spec.name, [ScriptedStep("final", spec.model, content="ok")])
