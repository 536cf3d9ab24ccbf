"""Recent routing decisions for the console: a ring preallocated at start, O(1) a request.

The routing pipeline tells :meth:`DecisionLog.scheduled` what the scheduler chose (the
primary profile, the picked replica's score and the runner-up's); the front door tells
:meth:`DecisionLog.finished` how the request ended (status, wait before it was scheduled,
latency). Requests refused before scheduling (401, 429, 503) are recorded too, with no
pick. A front door without the console never builds a log: nothing is recorded then.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from pilothouse.scheduling.types import SchedulingRequest, SchedulingResult


@dataclass(frozen=True, slots=True)
class Scheduled:
    """What the scheduler chose for one request (its last attempt's choice)."""

    at: float
    """``time.perf_counter()`` when it was scheduled."""
    profile: str
    picked: str
    picked_score: float | None
    runner_up: str | None
    runner_up_score: float | None
    candidates: int
    prompt_tokens: int
    uncached_tokens: int | None
    tenant: str | None
    priority: int


@dataclass(frozen=True, slots=True)
class DecisionRecord:
    """One request as the routing page shows it."""

    wall: float
    request_id: str
    model: str
    route: str
    status: int
    latency_s: float
    endpoint: str | None
    wait_s: float | None
    """From arrival to the (last) scheduling decision: admission, queue and hold."""
    choice: Scheduled | None
    """None: refused or failed before anything was scheduled."""


def scheduled_of(request: SchedulingRequest, result: SchedulingResult) -> Scheduled:
    """The pick and the runner-up of the primary profile, with their weighted scores."""
    profile = result.profiles[result.primary_profile]
    picked = profile.targets[0].name
    scores = profile.scores
    runner_up: str | None = None
    runner_score: float | None = None
    for name, score in scores.items():
        if name != picked and (runner_score is None or score > runner_score):
            runner_up, runner_score = name, score
    if runner_up is None and len(profile.targets) > 1:
        runner_up = profile.targets[1].name
    return Scheduled(
        at=time.perf_counter(),
        profile=result.primary_profile,
        picked=picked,
        picked_score=scores.get(picked),
        runner_up=runner_up,
        runner_up_score=runner_score,
        candidates=max(len(scores), len(profile.targets)),
        prompt_tokens=request.prompt_tokens,
        uncached_tokens=result.uncached_tokens,
        tenant=request.tenant,
        priority=request.priority,
    )


class DecisionLog:
    """A fixed ring of the last ``capacity`` requests and the choices still in flight."""

    __slots__ = ("_capacity", "_next", "_pending", "_slots", "total")

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("a decision log keeps at least one decision")
        self._capacity = capacity
        self._slots: list[DecisionRecord | None] = [None] * capacity
        self._next = 0
        self._pending: dict[str, Scheduled] = {}
        self.total = 0
        """Requests recorded since the start (the ring keeps the last ``capacity``)."""

    def scheduled(self, request: SchedulingRequest, result: SchedulingResult) -> None:
        """The pipeline's hook: keep the choice until the request ends."""
        pending = self._pending
        pending[request.request_id] = scheduled_of(request, result)
        if len(pending) > 4 * self._capacity:  # requests that never ended: drop the oldest
            del pending[next(iter(pending))]

    def finished(
        self,
        request_id: str,
        model: str,
        route: str,
        status: int,
        started: float,
        endpoint: str | None,
    ) -> None:
        """The request ended (``started``: its ``time.perf_counter()`` at arrival)."""
        choice = self._pending.pop(request_id, None)
        now = time.perf_counter()
        wait = choice.at - started if choice is not None else None
        self._slots[self._next] = DecisionRecord(
            time.time(), request_id, model, route, status, now - started, endpoint, wait, choice
        )
        self._next = (self._next + 1) % self._capacity
        self.total += 1

    def recent(self, limit: int | None = None) -> list[DecisionRecord]:
        """The newest first, at most ``limit``."""
        count = min(self.total, self._capacity, limit or self._capacity)
        out: list[DecisionRecord] = []
        index = self._next
        for _ in range(count):
            index = (index - 1) % self._capacity
            record = self._slots[index]
            if record is not None:
                out.append(record)
        return out
