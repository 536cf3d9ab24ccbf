"""``session-affinity`` scorer: a session's requests prefer the replica that served it last.

The session is ``SchedulingRequest.session_id``: the ``x-session-id`` header, else the body's
``user`` field. After each cycle the primary target is remembered for the session (in
``post_schedule``), in an LRU map bounded by ``max_sessions``; a session idle for longer
than ``idle_timeout_s`` (virtual or wall time, from ``CycleState.now``) is forgotten.

Scores: 1.0 for the endpoint that served the session last, 0.0 for every other one. A
request without a session, or with an unknown or expired one, scores 0.0 everywhere: a
constant changes no ranking, so the other scorers decide.

Endpoints that disappear are forgotten session by session: when the remembered endpoint is
not among the candidates (it left the pool, is not ready, or a filter such as
``not-saturated`` dropped it), nothing scores, the cycle picks another endpoint and
``post_schedule`` re-homes the session there, which now holds the newest turn of the
conversation. Sessions that never come back age out through the LRU bound and the idle
timeout, so memory stays bounded whatever the pool does.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping, Sequence

from pydantic import Field

from pilothouse.scheduling.context import PluginContext
from pilothouse.scheduling.interfaces import CycleState
from pilothouse.scheduling.plugins.base import NamedPlugin
from pilothouse.scheduling.types import Endpoint, SchedulingRequest, SchedulingResult
from pilothouse.scheduling.validation import ParametersModel, parse_parameters


class SessionAffinityParameters(ParametersModel):
    max_sessions: int = Field(default=100_000, gt=0)
    idle_timeout_s: float = Field(default=600.0, gt=0.0, allow_inf_nan=False)


class SessionAffinityScorer(NamedPlugin):
    """Scores the session's last endpoint 1.0; remembers each pick after the cycle."""

    __slots__ = ("_idle", "_max", "_sessions")

    def __init__(
        self, name: str, *, max_sessions: int = 100_000, idle_timeout_s: float = 600.0
    ) -> None:
        super().__init__(name)
        self._max = max_sessions
        self._idle = idle_timeout_s
        # session id -> (endpoint name, time of its last pick); least recently used first
        self._sessions: OrderedDict[str, tuple[str, float]] = OrderedDict()

    @classmethod
    def create(
        cls, name: str, parameters: Mapping[str, object], ctx: PluginContext
    ) -> SessionAffinityScorer:
        p = parse_parameters(SessionAffinityParameters, parameters)
        return cls(name, max_sessions=p.max_sessions, idle_timeout_s=p.idle_timeout_s)

    def home(self, session_id: str, now: float) -> str | None:
        """The endpoint remembered for ``session_id`` at ``now``, if any (expired: none)."""
        entry = self._sessions.get(session_id)
        if entry is None:
            return None
        endpoint, last = entry
        if now - last > self._idle:
            del self._sessions[session_id]
            return None
        return endpoint

    def __len__(self) -> int:
        """Sessions remembered (expired ones are dropped lazily)."""
        return len(self._sessions)

    def score(
        self, state: CycleState, request: SchedulingRequest, endpoints: Sequence[Endpoint]
    ) -> Sequence[float]:
        session = request.session_id
        home = None if session is None else self.home(session, state.now)
        if home is None:
            return [0.0] * len(endpoints)
        return [1.0 if e.name == home else 0.0 for e in endpoints]

    def post_schedule(
        self, state: CycleState, request: SchedulingRequest, result: SchedulingResult
    ) -> None:
        session = request.session_id
        if session is None:
            return
        sessions = self._sessions
        sessions[session] = (result.target.name, state.now)
        sessions.move_to_end(session)
        while len(sessions) > self._max:
            sessions.popitem(last=False)
