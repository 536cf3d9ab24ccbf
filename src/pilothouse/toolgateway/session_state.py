"""What the rules remember per session: taint, call history, approvals asked; and budgets.

State is keyed by the session id *and* the principal the endpoint authenticated: another
agent that presents a stolen ``Mcp-Session-Id`` gets a fresh state of its own (no taint to
launder, no approvals to reuse), and approvals are requested, and only consumed, for the
principal that asked (the confused deputy). States live in this process; a session idle for
``idle_s`` is forgotten (MCP sessions expire long before), and at most ``max_sessions``
are kept, the least recently used dropped first.

Budgets are reserved before a call and settled after it, with the semantics of
:mod:`pilothouse.governance.budgets` and :mod:`pilothouse.governance.limits`: a session's
call count and tool time (each call reserves its server's timeout, settled to what it
took) in this process, and calls per minute per identity in the governance limit backend
(shared by every replica when it is Redis).
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Sequence
from dataclasses import dataclass, field

from pilothouse.config.tools import Label, ToolBudgetSpec
from pilothouse.governance.budgets import Budgets, Charge
from pilothouse.governance.limits import Limit, Reservation
from pilothouse.governance.ports import LimitBackend
from pilothouse.toolgateway.policy import History

_HOUR_S = 3600.0
_MINUTE_S = 60.0


@dataclass(slots=True)
class SessionState:
    """One (session, principal)'s history as the rules see it."""

    taint: set[Label] = field(default_factory=set)
    calls: dict[str, deque[float]] = field(default_factory=dict)
    """Federated tool → start times of its calls in the last hour."""
    recent: dict[str, deque[float]] = field(default_factory=dict)
    """Federated tool → start times of its calls in the last minute (a second window, so
    counting them costs no scan of the hour's calls: amortised O(1) per call)."""
    totals: dict[str, int] = field(default_factory=dict)
    """Federated tool → calls in the whole session."""
    pending: dict[tuple[str, str], str] = field(default_factory=dict)
    """(tool, arguments hash) → the approval asked for that exact call."""
    approvals_used: int = 0
    last_used: float = 0.0

    def history(self, tool: str, now: float) -> History:
        times = self.calls.get(tool)
        if not times:
            return History(session=self.totals.get(tool, 0))
        while times and times[0] <= now - _HOUR_S:
            times.popleft()
        recent = self.recent[tool]
        while recent and recent[0] <= now - _MINUTE_S:
            recent.popleft()
        return History(len(recent), len(times), self.totals.get(tool, 0))

    def called(self, tool: str, now: float) -> None:
        self.calls.setdefault(tool, deque()).append(now)
        self.recent.setdefault(tool, deque()).append(now)
        self.totals[tool] = self.totals.get(tool, 0) + 1


class SessionTable:
    """Bounded states by (session id, principal) (see the module docstring)."""

    def __init__(self, idle_s: float = 86_400.0, max_sessions: int = 100_000) -> None:
        self.idle_s = idle_s
        self.max_sessions = max_sessions
        self._states: OrderedDict[tuple[str, str], SessionState] = OrderedDict()

    def get(self, session: str, principal: str, now: float) -> SessionState:
        key = (session, principal)
        state = self._states.get(key)
        if state is None:
            state = self._states[key] = SessionState()
        self._states.move_to_end(key)
        state.last_used = now
        self._evict(now)
        return state

    def __len__(self) -> int:
        return len(self._states)

    def _evict(self, now: float) -> None:
        while self._states:
            key, oldest = next(iter(self._states.items()))
            if len(self._states) <= self.max_sessions and oldest.last_used > now - self.idle_s:
                return
            del self._states[key]


@dataclass(frozen=True, slots=True)
class Hold:
    """What one allowed call reserved (a :class:`~pilothouse.toolgateway.guard.Verdict`'s
    ``hold``), settled or released exactly once."""

    calls: Charge | None
    seconds: Charge | None
    rate: Reservation | None


class ToolBudgets:
    """Tool-call budgets per (session, principal) and per principal (see the module
    docstring); raise
    :class:`~pilothouse.errors.BudgetExceeded` or :class:`~pilothouse.errors.RateLimited`
    with nothing held when a call would go over."""

    def __init__(self, spec: ToolBudgetSpec, limits: LimitBackend) -> None:
        self.spec = spec
        self.limits = limits
        self.calls = Budgets("calls")
        self.seconds = Budgets("seconds")

    async def reserve(self, session: str, principal: str, timeout_s: float, now: float) -> Hold:
        spec = self.spec
        subject = _subject(session, principal)
        calls = seconds = None
        try:
            if spec.calls_per_session is not None:
                calls = self.calls.reserve([(subject, spec.calls_per_session)], 1)
            if spec.seconds_per_session is not None:
                seconds = self.seconds.reserve([(subject, spec.seconds_per_session)], timeout_s)
            rate = None
            if spec.calls_per_minute is not None:
                limit = Limit(requests_per_min=spec.calls_per_minute)
                rate = await self.limits.reserve([(f"tools:{principal}", limit)], 0, now)
        except BaseException:  # over a budget (or cancelled): nothing stays held
            self._give_back(calls, seconds)
            raise
        return Hold(calls, seconds, rate)

    async def settle(self, hold: Hold, elapsed_s: float, now: float) -> None:
        if hold.calls is not None:
            self.calls.settle(hold.calls, 1)
        if hold.seconds is not None:
            self.seconds.settle(hold.seconds, elapsed_s)
        if hold.rate is not None:
            await self.limits.settle(hold.rate, 0, now)

    async def release(self, hold: Hold, now: float) -> None:
        self._give_back(hold.calls, hold.seconds)
        if hold.rate is not None:
            await self.limits.release(hold.rate, now)

    def _give_back(self, *charges: Charge | None) -> None:
        for charge, budgets in zip(charges, (self.calls, self.seconds), strict=True):
            if charge is not None:
                budgets.release(charge)

    def used(self, session: str, principal: str) -> Sequence[float]:
        """Calls and seconds committed by ``session`` (spent plus reserved)."""
        subject = _subject(session, principal)
        return self.calls.committed(subject), self.seconds.committed(subject)


def _subject(session: str, principal: str) -> str:
    return f"session:{principal}:{session}"
