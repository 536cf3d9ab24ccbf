"""The scheduler: one pure, synchronous, clock-injected scheduling cycle per request.

A cycle reads ``clock.now()`` once into a fresh :class:`CycleState`, asks the profile
handler which profiles to run, runs each (filters → weighted scorers → picker), lets the
handler turn the profile results into a :class:`SchedulingResult`, then tells every plugin
that implements :class:`PostSchedule`. The gateway, the EPP and the simulator all call this.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import cast

from pilothouse.clock import Clock, ManualClock
from pilothouse.errors import NoEndpointAvailable, SchedulingError
from pilothouse.scheduling.builder import SchedulerParts, build_parts
from pilothouse.scheduling.config import SchedulerConfig
from pilothouse.scheduling.context import PluginContext
from pilothouse.scheduling.explain import Explanation, explain, runner_up
from pilothouse.scheduling.interfaces import (
    LATENCY_UNCACHED_TOKENS_KEY,
    TTFT_ESTIMATE_KEY,
    UNCACHED_TOKENS_KEY,
    CycleState,
    Plugin,
    PostSchedule,
    ProfileHandler,
)
from pilothouse.scheduling.profile import EXHAUSTED_KEY, Profile
from pilothouse.scheduling.registry import PluginRegistry, default_registry
from pilothouse.scheduling.types import (
    Endpoint,
    ProfileResult,
    SchedulingRequest,
    SchedulingResult,
    TtftEstimate,
)


class Scheduler:
    """Runs scheduling cycles; build one with :func:`build_scheduler`."""

    __slots__ = ("_clock", "_handler", "_names", "_plugins", "_post", "_profiles")

    def __init__(
        self,
        clock: Clock,
        profiles: Mapping[str, Profile],
        handler: ProfileHandler,
        post_schedule: Sequence[PostSchedule] = (),
        plugins: Mapping[str, Plugin] | None = None,
    ) -> None:
        if not profiles:
            raise ValueError("a scheduler needs at least one profile")
        self._clock = clock
        self._profiles = dict(profiles)
        self._names = tuple(self._profiles)
        self._handler = handler
        self._post = tuple(post_schedule)
        self._plugins = dict(plugins or {})

    @property
    def plugins(self) -> Mapping[str, Plugin]:
        """The declared plugin instances by name (for introspection and tests)."""
        return self._plugins

    @property
    def profiles(self) -> Mapping[str, Profile]:
        return self._profiles

    def schedule(
        self, request: SchedulingRequest, endpoints: Sequence[Endpoint]
    ) -> SchedulingResult:
        """Pick targets for ``request`` among ``endpoints`` (already narrowed to its model)."""
        state, result = self._cycle(request, endpoints)
        for plugin in self._post:
            plugin.post_schedule(state, request, result)
        return result

    def explained(
        self, request: SchedulingRequest, endpoints: Sequence[Endpoint]
    ) -> tuple[SchedulingResult, Explanation]:
        """:meth:`schedule`, plus each scorer's value for the pick and the runner-up.

        The scorers run a second time (:func:`explain`), before the post-schedule hooks
        change what they read: use it only for requests whose decision is recorded.
        """
        state, result = self._cycle(request, endpoints)
        primary = result.profiles[result.primary_profile]
        names = {primary.targets[0].name}
        second = runner_up(primary)
        if second is not None:
            names.add(second[0])
        profile = self._profiles[result.primary_profile]
        explanation = explain(profile, state.now, request, endpoints, names)
        for plugin in self._post:
            plugin.post_schedule(state, request, result)
        return result, explanation

    def _cycle(
        self, request: SchedulingRequest, endpoints: Sequence[Endpoint]
    ) -> tuple[CycleState, SchedulingResult]:
        if not endpoints:
            raise NoEndpointAvailable(f"no endpoint serves model {request.model!r}")
        state = CycleState(now=self._clock.now())
        results = self._run_profiles(state, request, endpoints)
        result = self._handler.process_results(state, request, results)
        primary = result.profiles.get(result.primary_profile)
        if primary is None or not primary.targets:
            reason = state.data.get(EXHAUSTED_KEY, "no profile produced a target")
            raise NoEndpointAvailable(
                f"no endpoint available for model {request.model!r} "
                f"among {len(endpoints)} endpoint(s): {reason}"
            )
        return state, _with_estimates(state, result, primary.targets[0].name)

    def _run_profiles(
        self, state: CycleState, request: SchedulingRequest, endpoints: Sequence[Endpoint]
    ) -> dict[str, ProfileResult]:
        results: dict[str, ProfileResult] = {}
        for _ in range(len(self._names) + 1):
            names = self._handler.pick_profiles(state, request, self._names, results)
            if not names:
                return results
            for name in names:
                profile = self._profiles.get(name)
                if profile is None:
                    raise SchedulingError(f"profile handler asked for unknown profile {name!r}")
                if name in results:
                    raise SchedulingError(f"profile handler asked for profile {name!r} twice")
                results[name] = profile.run(state, request, endpoints)
        return results  # unreachable: every round runs a new profile or raises


def _with_estimates(state: CycleState, result: SchedulingResult, target: str) -> SchedulingResult:
    """``result`` with what the plugins estimated in the cycle, unless the profile handler
    set it: the target's uncached prompt tokens (for routing, and for latency prediction when
    a plugin told them apart) and the request's TTFT estimate."""
    tokens = result.uncached_tokens
    if tokens is None:
        tokens = _target_value(state, UNCACHED_TOKENS_KEY, target)
    latency = result.latency_uncached_tokens
    if latency is None:
        latency = _target_value(state, LATENCY_UNCACHED_TOKENS_KEY, target)
    estimate = result.ttft_estimate
    published = state.data.get(TTFT_ESTIMATE_KEY)
    if estimate is None and isinstance(published, TtftEstimate):
        estimate = published
    if (
        tokens is result.uncached_tokens
        and latency is result.latency_uncached_tokens
        and estimate is result.ttft_estimate
    ):
        return result
    # The constructor, not dataclasses.replace: a few µs less on every request.
    return SchedulingResult(
        primary_profile=result.primary_profile,
        profiles=result.profiles,
        uncached_tokens=tokens,
        headers=result.headers,
        ttft_estimate=estimate,
        latency_uncached_tokens=latency,
    )


def _target_value(state: CycleState, key: str, target: str) -> int | None:
    """The target's entry of a per-endpoint token count a plugin published under ``key``."""
    published = state.data.get(key)
    return cast("int | None", published.get(target)) if isinstance(published, dict) else None


def build_scheduler(
    config: SchedulerConfig,
    clock: Clock,
    *,
    registry: PluginRegistry | None = None,
    seed: int | None = None,
    services: Mapping[str, object] | None = None,
) -> Scheduler:
    """Build a scheduler from a config; every config problem raises ConfigError with a path.

    ``services`` become :attr:`PluginContext.services` (read-only data sources such as a
    KV-event prefix index and a tokenizer).
    """
    ctx = PluginContext(clock=clock, seed=seed, services=MappingProxyType(dict(services or {})))
    parts: SchedulerParts = build_parts(config, registry or default_registry(), ctx)
    return Scheduler(clock, parts.profiles, parts.handler, parts.post_schedule, parts.plugins)


def validate_config(config: SchedulerConfig, *, registry: PluginRegistry | None = None) -> None:
    """Check everything :func:`build_scheduler` checks (types, parameters, roles), build nothing.

    Use it to fail at startup, before anything is launched.
    """
    build_parts(config, registry or default_registry(), PluginContext(clock=ManualClock(), seed=0))
