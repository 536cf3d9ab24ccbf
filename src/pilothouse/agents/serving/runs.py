"""The agents one service serves, and the record of which run answered which request."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

from pilothouse.agents.ports import AgentRunner
from pilothouse.config.agents import AgentSpec
from pilothouse.errors import ModelNotFound

_REMEMBERED = 10_000


@dataclass(frozen=True, slots=True)
class ServedAgent:
    """One agent: its spec (name, description, tools for the card) and its runner."""

    spec: AgentSpec
    runner: AgentRunner

    @property
    def name(self) -> str:
        return self.spec.name


class Agents:
    """The served agents by name, and the runs started here (bounded, most recent kept)."""

    def __init__(self, agents: Sequence[ServedAgent]) -> None:
        self.by_name = {a.name: a for a in agents}
        if len(self.by_name) != len(agents):
            raise ValueError("agent names must be unique")
        self._runs: OrderedDict[str, tuple[str, str]] = OrderedDict()

    def get(self, name: str) -> ServedAgent:
        agent = self.by_name.get(name)
        if agent is None:
            served = ", ".join(sorted(self.by_name)) or "none"
            raise ModelNotFound(
                f"no agent named '{name}' is served here (served: {served}); see GET /v1/models",
                param="model",
                code="model_not_found",
            )
        return agent

    def remember(self, key: str, agent: str, run_id: str) -> None:
        """That the request ``key`` (a response id) is the run ``run_id`` of ``agent``."""
        self._runs[key] = (agent, run_id)
        self._runs.move_to_end(key)
        while len(self._runs) > _REMEMBERED:
            self._runs.popitem(last=False)

    def run_of(self, key: str) -> tuple[str, str] | None:
        return self._runs.get(key)
