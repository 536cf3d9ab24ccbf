"""Deadline: one reused timer for a connection's phase timeouts, on a loop whose time the
test moves (no sleeps)."""

from __future__ import annotations

import asyncio
import heapq
from collections.abc import Callable
from typing import Any, cast

import pytest

from pilothouse.deadline import Deadline


class _Handle:
    def __init__(self, at: float, callback: Callable[[], object]) -> None:
        self.at = at
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True

    def __lt__(self, other: _Handle) -> bool:
        return self.at < other.at


class _Loop:
    """The two calls a Deadline makes, with a clock the test advances."""

    def __init__(self) -> None:
        self.now = 0.0
        self.timers: list[_Handle] = []
        self.created = 0

    def time(self) -> float:
        return self.now

    def call_at(self, at: float, callback: Callable[[], object]) -> _Handle:
        self.created += 1
        handle = _Handle(at, callback)
        heapq.heappush(self.timers, handle)
        return handle

    def advance(self, seconds: float) -> None:
        """Run the timers due by then, each at its own time, as a loop does."""
        end = self.now + seconds
        while self.timers and self.timers[0].at <= end:
            handle = heapq.heappop(self.timers)
            if not handle.cancelled:
                self.now = max(self.now, handle.at)
                handle.callback()
        self.now = end

    def pending(self) -> int:
        return sum(not h.cancelled for h in self.timers)


def _deadline() -> tuple[_Loop, Deadline, list[float]]:
    loop, fired = _Loop(), list[float]()
    deadline = Deadline(
        cast(asyncio.AbstractEventLoop, cast(Any, loop)), lambda: fired.append(loop.now)
    )
    return loop, deadline, fired


def test_it_fires_once_at_its_deadline() -> None:
    loop, deadline, fired = _deadline()
    deadline.arm(10)
    assert deadline.armed
    loop.advance(9.9)
    assert fired == []
    loop.advance(0.1)
    assert fired == [10.0]
    assert not deadline.armed
    loop.advance(100)
    assert fired == [10.0]


def test_rearming_later_reuses_the_pending_timer_and_fires_at_the_last_deadline() -> None:
    loop, deadline, fired = _deadline()
    for _ in range(1000):  # a thousand requests through a connection, one phase each
        deadline.arm(10)
        loop.advance(0.001)
        deadline.clear()
    deadline.arm(10)
    assert loop.created == 1
    loop.advance(9.5)  # at 10 the first timer fires, finds a later deadline, re-arms once
    assert fired == []
    assert loop.created == 2
    loop.advance(0.6)
    assert fired == [pytest.approx(11.0)]
    assert loop.created == 2


def test_an_earlier_deadline_replaces_the_pending_timer() -> None:
    loop, deadline, fired = _deadline()
    deadline.arm(30)
    deadline.arm(1)
    assert loop.pending() == 1
    loop.advance(1)
    assert fired == [1.0]


def test_a_cleared_deadline_never_calls_back() -> None:
    loop, deadline, fired = _deadline()
    deadline.arm(5)
    deadline.clear()
    assert not deadline.armed
    loop.advance(60)
    assert fired == []
    assert loop.pending() == 0  # the stale timer fired harmlessly and was not re-armed


def test_cancel_drops_the_pending_timer() -> None:
    loop, deadline, fired = _deadline()
    deadline.arm(5)
    deadline.cancel()
    assert loop.pending() == 0
    loop.advance(60)
    assert fired == []


def test_each_phase_times_out_from_its_own_start() -> None:
    loop, deadline, fired = _deadline()
    deadline.arm(10)  # a head
    loop.advance(4)
    deadline.arm(2)  # then a body, with a shorter timeout: due at 6, not 10
    loop.advance(2)
    assert fired == [6.0]
