"""What the console reads, handed to it by the front door that mounts it.

The console sits below the gateway (it never imports it): the gateway fills a
:class:`ConsoleSources` from its context. Each source may be absent, and the page that
needs it then says what is not enabled and how to enable it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from pilothouse.governance.service import Governance
from pilothouse.scheduling.types import Endpoint
from pilothouse.ui.decisions import DecisionLog


class PoolView(Protocol):
    """The endpoint pool as the fleet page reads it."""

    def endpoints(self) -> list[Endpoint]: ...

    def models(self) -> list[str]: ...


@dataclass(slots=True)
class ConsoleSources:
    pool: PoolView
    decisions: DecisionLog
    governance: Callable[[], Governance | None]
    """The running governance stack, or None (``gateway.governance`` absent)."""
    control: Callable[[], Mapping[str, object] | None] = lambda: None
    """The control plane's status (replica phases, autoscaler targets and its recent
    decisions) under ``pilothouse up``; None for a standalone gateway."""
    reports_dir: Path | None = None
    """``gateway.ui.reports_dir``: benchmark reports."""
