"""The ``single`` profile handler."""

from __future__ import annotations

import pytest

from pilothouse.scheduling.interfaces import CycleState
from pilothouse.scheduling.plugins.profiles.single import SingleProfileHandler
from pilothouse.scheduling.testing import endpoint, request
from pilothouse.scheduling.types import ProfileResult

DONE = {"x": ProfileResult(targets=(endpoint("a"),))}


@pytest.mark.parametrize(
    ("profiles", "results", "expected"),
    [
        pytest.param(["x", "y"], {}, ["x"], id="runs-the-first"),
        pytest.param(["x", "y"], DONE, [], id="then-stops"),
        pytest.param([], {}, [], id="no-profiles"),
    ],
)
def test_pick_profiles(
    profiles: list[str], results: dict[str, ProfileResult], expected: list[str]
) -> None:
    handler = SingleProfileHandler()
    assert list(handler.pick_profiles(CycleState(0.0), request(), profiles, results)) == expected


def test_process_results_makes_the_profile_primary() -> None:
    result = SingleProfileHandler().process_results(CycleState(0.0), request(), DONE)
    assert result.primary_profile == "x"
    assert result.target.name == "a"
    assert result.fallbacks == ()
