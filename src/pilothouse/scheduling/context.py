"""What a plugin factory is: its signature and the context it is given."""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from pilothouse.clock import Clock
from pilothouse.scheduling.interfaces import Plugin


@dataclass(frozen=True, slots=True)
class PluginContext:
    """Shared, read-only construction context.

    ``seed`` makes every random choice reproducible (the simulator sets it); ``None`` seeds
    from the operating system.
    """

    clock: Clock
    seed: int | None = None

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
