"""Console logins: the admin credential once, then a session cookie (never the key).

A login with the admin credential (compared in constant time) opens a session: a random
token in an ``HttpOnly``, ``SameSite=Strict`` cookie scoped to ``/ui``, and a second random
token, the CSRF token, that every form posting a change must carry. Sessions live in this
process (a restarted gateway asks again) and expire after ``gateway.ui.session_ttl_s``;
at most :data:`MAX_SESSIONS` are kept (the oldest goes first).
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass

COOKIE = "pilothouse_console"
MAX_SESSIONS = 256


@dataclass(frozen=True, slots=True)
class Session:
    token: str
    csrf: str
    expires_at: float


class Sessions:
    """Open sessions of one gateway process."""

    def __init__(self, credential: str, ttl_s: float, clock: Callable[[], float]) -> None:
        self._credential = credential.encode()
        self._ttl_s = ttl_s
        self._clock = clock
        self._open: dict[str, Session] = {}

    def login(self, supplied: str) -> Session | None:
        """A new session when ``supplied`` is the admin credential, else None."""
        if not hmac.compare_digest(supplied.encode(), self._credential):
            return None
        now = self._clock()
        for token in [t for t, s in self._open.items() if s.expires_at <= now]:
            del self._open[token]
        while len(self._open) >= MAX_SESSIONS:
            del self._open[next(iter(self._open))]
        session = Session(secrets.token_urlsafe(32), secrets.token_urlsafe(32), now + self._ttl_s)
        self._open[session.token] = session
        return session

    def get(self, token: str | None) -> Session | None:
        """The live session of a cookie's token, or None."""
        if not token:
            return None
        session = self._open.get(token)
        if session is None or session.expires_at <= self._clock():
            return None
        return session

    def logout(self, token: str | None) -> None:
        if token:
            self._open.pop(token, None)

    @property
    def ttl_s(self) -> float:
        return self._ttl_s


def csrf_ok(session: Session, supplied: str | None) -> bool:
    """The form's CSRF token matches the session's (constant time)."""
    return supplied is not None and hmac.compare_digest(supplied.encode(), session.csrf.encode())
