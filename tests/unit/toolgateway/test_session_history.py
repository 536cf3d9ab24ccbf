"""A session's call history by window: what the policy's ``context.calls`` reads."""

from __future__ import annotations

from pilothouse.toolgateway.policy import History
from pilothouse.toolgateway.session_state import SessionState


def test_windows_slide_and_the_session_total_stays() -> None:
    state = SessionState()
    for t in (0.0, 30.0, 50.0, 100.0):
        state.called("a__x", t)
    state.called("a__y", 100.0)
    assert state.history("a__x", 100.0) == History(minute=2, hour=4, session=4)
    assert state.history("a__x", 111.0) == History(minute=1, hour=4, session=4)
    assert state.history("a__x", 3650.0) == History(minute=0, hour=1, session=4)
    assert state.history("a__x", 3700.0) == History(minute=0, hour=0, session=4)
    assert state.history("a__y", 100.0) == History(minute=1, hour=1, session=1)
    assert state.history("a__z", 100.0) == History()


def test_a_call_exactly_a_minute_old_has_left_the_minute() -> None:
    state = SessionState()
    state.called("a__x", 10.0)
    assert state.history("a__x", 70.0).minute == 0
    assert state.history("a__x", 70.0).hour == 1
