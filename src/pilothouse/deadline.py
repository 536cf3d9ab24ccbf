"""A timeout re-armed and cleared many times on one timer: :class:`Deadline`.

A connection times out its phases: a request head must arrive within so long, a body must
keep moving, an engine must answer. Done with ``call_later`` and ``cancel`` for every
phase, each costs a timer created and removed from the event loop's timer heap (about
2 µs of CPU each with uvloop); a proxied request goes through four such phases, about 3 %
of the gateway's CPU per request.

A :class:`Deadline` keeps at most one timer. :meth:`Deadline.arm` records when the phase
ends; a timer is created only when none is pending or the pending one would fire too late.
:meth:`Deadline.clear` forgets the deadline and leaves the timer be. When the timer fires
it calls back only if the current deadline has passed; otherwise it re-arms itself for the
current one, or stops when none is left. So a connection that moves through its phases
faster than its timeouts creates a timer once per timeout period, not once per phase.

The callback runs at most ``_SLACK_S`` early (the loop's timers have millisecond
resolution) and never while the deadline is cleared.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

_SLACK_S = 0.001  # the loop's timers round to milliseconds: a timer may fire this early


class Deadline:
    """One phase timeout at a time, on at most one pending timer (module docstring)."""

    __slots__ = ("_at", "_callback", "_handle", "_handle_at", "_loop")

    def __init__(self, loop: asyncio.AbstractEventLoop, callback: Callable[[], object]) -> None:
        self._loop = loop
        self._callback = callback
        self._at: float | None = None
        self._handle: asyncio.TimerHandle | None = None
        self._handle_at = 0.0

    @property
    def armed(self) -> bool:
        """Whether a deadline is set (cleared ones, and fired ones, are not)."""
        return self._at is not None

    def arm(self, delay_s: float) -> None:
        """Call back ``delay_s`` seconds from now, unless re-armed or cleared before."""
        at = self._loop.time() + delay_s
        self._at = at
        handle = self._handle
        if handle is None or self._handle_at > at + _SLACK_S:
            if handle is not None:
                handle.cancel()
            self._handle_at = at
            self._handle = self._loop.call_at(at, self._fire)

    def clear(self) -> None:
        """No deadline until the next :meth:`arm` (a pending timer fires harmlessly)."""
        self._at = None

    def cancel(self) -> None:
        """For good (the connection is gone): clear, and drop the pending timer."""
        self._at = None
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _fire(self) -> None:
        self._handle = None
        at = self._at
        if at is None:
            return
        if self._loop.time() + _SLACK_S >= at:
            self._at = None
            self._callback()
        else:
            self._handle_at = at
            self._handle = self._loop.call_at(at, self._fire)
