"""``single`` profile handler: runs the first profile, whose result is the primary one.

It is the handler used when a config names none.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from pilothouse.scheduling.context import PluginContext
from pilothouse.scheduling.interfaces import CycleState
from pilothouse.scheduling.plugins.base import NamedPlugin, NoParameters
from pilothouse.scheduling.types import ProfileResult, SchedulingRequest, SchedulingResult
from pilothouse.scheduling.validation import parse_parameters


class SingleProfileHandler(NamedPlugin):
    __slots__ = ()

    def __init__(self, name: str = "single") -> None:
        super().__init__(name)

    @classmethod
    def create(
        cls, name: str, parameters: Mapping[str, object], ctx: PluginContext
    ) -> SingleProfileHandler:
        parse_parameters(NoParameters, parameters)
        return cls(name)

    def pick_profiles(
        self,
        state: CycleState,
        request: SchedulingRequest,
        profiles: Sequence[str],
        results: Mapping[str, ProfileResult],
    ) -> Sequence[str]:
        if results or not profiles:
            return ()
        return (profiles[0],)

    def process_results(
        self,
        state: CycleState,
        request: SchedulingRequest,
        results: Mapping[str, ProfileResult],
    ) -> SchedulingResult:
        primary = next(iter(results))
        return SchedulingResult(primary_profile=primary, profiles=results)
