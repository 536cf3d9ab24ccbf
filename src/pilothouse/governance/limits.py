"""Token rate limits: requests per minute, tokens per minute and concurrent requests.

Each subject (a key, a team, a model) has a :class:`Limit`. A request reserves, on every
subject it belongs to at once (all or nothing), one request, its prompt tokens plus the most
output it may produce, and one concurrent slot; :meth:`RateLimiter.settle` corrects the
tokens to what was used and frees the slot, :meth:`RateLimiter.release` gives everything
back for a request that never reached an engine.

The window is a rolling minute kept as per-second buckets, so a burst that used the minute
is forgotten second by second, not all at once. Calls are synchronous and never await: on
one event loop a reservation is atomic, so N concurrent requests can never be admitted past
a limit together.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import count
from typing import NamedTuple

from pilothouse.errors import RateLimited

WINDOW_S = 60


@dataclass(frozen=True, slots=True)
class Limit:
    """What one subject may use; ``None`` leaves a dimension unlimited."""

    requests_per_min: int | None = None
    tokens_per_min: int | None = None
    concurrent: int | None = None


@dataclass(slots=True)
class _Usage:
    buckets: deque[list[int]] = field(default_factory=deque)  # [second, requests, tokens]
    requests: int = 0
    tokens: int = 0
    in_flight: int = 0

    def expire(self, now: float) -> None:
        horizon = int(now) - WINDOW_S
        while self.buckets and self.buckets[0][0] <= horizon:
            _, requests, tokens = self.buckets.popleft()
            self.requests -= requests
            self.tokens -= tokens

    def correct(self, at: float, requests: int, tokens: int) -> None:
        """Adjust the bucket of second ``at`` (nothing once it left the window)."""
        second = int(at)
        for bucket in reversed(self.buckets):
            if bucket[0] == second:
                bucket[1] += requests
                bucket[2] += tokens
                self.requests += requests
                self.tokens += tokens
                return
            if bucket[0] < second:
                return

    def add(self, now: float, requests: int, tokens: int) -> None:
        second = int(now)
        if self.buckets and self.buckets[-1][0] == second:
            self.buckets[-1][1] += requests
            self.buckets[-1][2] += tokens
        else:
            self.buckets.append([second, requests, tokens])
        self.requests += requests
        self.tokens += tokens


class Reservation(NamedTuple):
    """What one request holds until it is settled or released (a named tuple: one is made
    per request, at a quarter of a frozen dataclass's cost)."""

    id: int
    subjects: tuple[str, ...]
    tokens: int
    at: float


class RateLimiter:
    """Rolling-minute counters per subject (see the module docstring)."""

    def __init__(self) -> None:
        self._usage: dict[str, _Usage] = {}
        self._open: dict[int, Reservation] = {}
        self._ids = count()

    def reserve(
        self, subjects: Sequence[tuple[str, Limit]], tokens: int, now: float
    ) -> Reservation:
        """Hold one request of ``tokens`` on every subject, or raise :class:`RateLimited`
        naming the first limit it would exceed (nothing is held then)."""
        # The hot path of every governed request: the window's bookkeeping is inlined
        # (_Usage.expire and _Usage.add, spelled out) rather than called per subject.
        second = int(now)
        horizon = second - WINDOW_S
        held = []
        for subject, limit in subjects:
            usage = self._usage.get(subject)
            if usage is None:
                usage = self._usage[subject] = _Usage()
            elif usage.buckets and usage.buckets[0][0] <= horizon:
                usage.expire(now)
            _check(subject, limit, usage, tokens)
            held.append(usage)
        for usage in held:
            buckets = usage.buckets
            if buckets and buckets[-1][0] == second:
                bucket = buckets[-1]
                bucket[1] += 1
                bucket[2] += tokens
            else:
                buckets.append([second, 1, tokens])
            usage.requests += 1
            usage.tokens += tokens
            usage.in_flight += 1
        reservation = Reservation(next(self._ids), tuple([s for s, _ in subjects]), tokens, now)
        self._open[reservation.id] = reservation
        return reservation

    def settle(self, reservation: Reservation, used_tokens: int, now: float) -> None:
        """The request ended having used ``used_tokens``: correct the count, free its slot."""
        if self._open.pop(reservation.id, None) is None:
            return  # settled or released already: never twice
        horizon = int(now) - WINDOW_S
        second = int(reservation.at)
        correction = used_tokens - reservation.tokens
        for subject in reservation.subjects:
            usage = self._usage[subject]
            usage.in_flight -= 1
            buckets = usage.buckets
            if buckets and buckets[0][0] <= horizon:
                usage.expire(now)
            if not correction:
                continue
            if buckets and buckets[-1][0] == second:  # reserved this very second
                buckets[-1][2] += correction
                usage.tokens += correction
            else:
                usage.correct(reservation.at, 0, correction)

    def release(self, reservation: Reservation, now: float) -> None:
        """The request did no engine work: give back its request, tokens and slot."""
        if reservation.id not in self._open:
            return
        self.settle(reservation, 0, now)
        for subject in reservation.subjects:
            self._usage[subject].correct(reservation.at, -1, 0)

    def usage(self, subject: str, now: float) -> tuple[int, int, int]:
        """Requests and tokens in the last minute, and requests in flight, of ``subject``."""
        usage = self._usage.get(subject)
        if usage is None:
            return 0, 0, 0
        usage.expire(now)
        return usage.requests, usage.tokens, usage.in_flight


def _check(subject: str, limit: Limit, usage: _Usage, tokens: int) -> None:
    """Raise :class:`RateLimited` if one more request of ``tokens`` would exceed ``limit``
    (``usage`` expired up to now)."""
    if limit.concurrent is not None and usage.in_flight + 1 > limit.concurrent:
        raise RateLimited(subject, "concurrent requests", limit.concurrent, retry_after=1.0)
    if limit.requests_per_min is not None and usage.requests + 1 > limit.requests_per_min:
        raise RateLimited(subject, "requests per minute", limit.requests_per_min)
    if limit.tokens_per_min is not None and usage.tokens + tokens > limit.tokens_per_min:
        raise RateLimited(subject, "tokens per minute", limit.tokens_per_min)
