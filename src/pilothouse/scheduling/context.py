"""What a plugin factory is: its signature and the context it is given."""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Protocol

from pilothouse.clock import Clock
from pilothouse.scheduling.interfaces import Plugin

_NO_SERVICES: Mapping[str, object] = MappingProxyType({})


def _no_services() -> Mapping[str, object]:
    return _NO_SERVICES


@dataclass(frozen=True, slots=True)
class PluginContext:
    """Shared, read-only construction context.

    ``seed`` makes every random choice reproducible (the simulator sets it); ``None`` seeds
    from the operating system.

    ``services`` are read-only data sources a plugin may read while scoring, filled by whoever
    builds the scheduler (gateway, endpoint picker, simulator), by well-known key: for example
    ``"kv-index"`` (a prefix index fed by KV events) and ``"tokenizer"`` (see
    :mod:`pilothouse.scheduling.plugins.scorers.precise_prefix`). Producers update them between
    cycles; plugins never write them. A plugin must work, possibly degraded, without them.
    """

    clock: Clock
    seed: int | None = None
    services: Mapping[str, object] = field(default_factory=_no_services, hash=False, compare=False)

    def rng(self, plugin_name: str) -> random.Random:
        """A random generator of one plugin: independent per name, reproducible per seed."""
        if self.seed is None:
            return random.Random()
        return random.Random(f"{self.seed}/{plugin_name}")


class PluginFactory(Protocol):
    """Builds one plugin; raises ConfigError whose path is relative to ``parameters``."""

    def __call__(
        self, name: str, parameters: Mapping[str, object], ctx: PluginContext
    ) -> Plugin: ...
