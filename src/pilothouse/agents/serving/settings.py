"""What an agent service needs to build its runners: where the gateways are, and its key.

The runtime (``pilothouse.agents.runtime``) provides ``build_runner(spec, fleet, settings)``
matching :class:`RunnerFactory`; serving depends on that signature only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from pilothouse.agents.ports import AgentRunner
from pilothouse.config.agents import AgentSpec
from pilothouse.config.fleet import FleetSpec


@dataclass(frozen=True, slots=True)
class RunnerSettings:
    """How a runner reaches the gateway (model calls) and the tool gateway (MCP), and the
    agent's own key, sent to both (``None``: no key, for a gateway without governance)."""

    gateway_url: str
    toolgateway_url: str | None = None
    api_key: str | None = None


class RunnerFactory(Protocol):
    """Builds the runner of one agent of ``fleet``."""

    def __call__(
        self, spec: AgentSpec, fleet: FleetSpec, settings: RunnerSettings
    ) -> AgentRunner: ...
