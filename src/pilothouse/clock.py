"""Time as an injected dependency.

The scheduler never reads the wall clock: it is handed a :class:`Clock`. Production code uses
:class:`SystemClock`; the discrete-event simulator and tests use :class:`ManualClock` (or the
simulator's own virtual clock), so the same scheduler objects run in virtual time.
"""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    """Monotonic seconds; only differences are meaningful."""

    def now(self) -> float: ...


class SystemClock:
    """The process's monotonic clock."""

    def now(self) -> float:
        return time.monotonic()


class ManualClock:
    """A clock that moves only when told to: for tests and virtual-time simulation."""

    def __init__(self, start: float = 0.0) -> None:
        self._now = start

    def now(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("a clock cannot go backwards")
        self._now += seconds

    def set(self, when: float) -> None:
        if when < self._now:
            raise ValueError("a clock cannot go backwards")
        self._now = when
