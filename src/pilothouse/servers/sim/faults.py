"""Failure injection for the simulator server.

- ``error_rate``: that fraction of completion requests is answered 500 with an OpenAI error
  body (after validation, before the engine sees them);
- ``hang_rate``: that fraction never gets an answer (the connection stays open until the
  client gives up or the server stops);
- ``startup_delay_s``: ``/health`` answers 503 and completions are refused with 503 until
  that many seconds after start;
- ``crash_after``: the process exits abruptly once that many completion requests have been
  answered.

Draws come from a seeded generator, so a run with the same seed and request order fails the
same requests.
"""

from __future__ import annotations

import enum
import random

from pilothouse.servers.sim.settings import FaultSettings


class Fault(enum.Enum):
    NONE = "none"
    ERROR = "error"
    HANG = "hang"


class FaultInjector:
    """Decides the fate of each request and counts answered ones."""

    def __init__(self, settings: FaultSettings, seed: int, started_at: float) -> None:
        self.settings = settings
        self._rng = random.Random(seed)
        self._ready_at = started_at + settings.startup_delay_s
        self._answered = 0

    def ready(self, now: float) -> bool:
        return now >= self._ready_at

    def draw(self) -> Fault:
        settings = self.settings
        if not settings.error_rate and not settings.hang_rate:
            return Fault.NONE
        roll = self._rng.random()
        if roll < settings.error_rate:
            return Fault.ERROR
        if roll < settings.error_rate + settings.hang_rate:
            return Fault.HANG
        return Fault.NONE

    def answered(self) -> bool:
        """Count one answered request; ``True`` when the process should now crash."""
        self._answered += 1
        limit = self.settings.crash_after
        return limit is not None and self._answered >= limit
