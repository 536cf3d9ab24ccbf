"""From a :class:`SchedulerConfig` to runnable parts: plugins, profiles, handler.

Everything a registry can tell is checked here, each error with its config path: unknown
plugin types, bad parameters, a referenced plugin that is not a filter, scorer or picker, a
weight on something that is not a scorer, a profile without exactly one picker, and a
``profile_handler`` that is not a profile handler.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from pilothouse.errors import ConfigError
from pilothouse.scheduling.config import ProfileSpec, SchedulerConfig
from pilothouse.scheduling.context import PluginContext
from pilothouse.scheduling.interfaces import (
    Filter,
    Picker,
    Plugin,
    PostSchedule,
    ProfileHandler,
    Scorer,
)
from pilothouse.scheduling.plugins.profiles.single import SingleProfileHandler
from pilothouse.scheduling.profile import Profile, WeightedScorer
from pilothouse.scheduling.registry import PluginRegistry

_ROLES: tuple[tuple[str, type[Plugin]], ...] = (
    ("filter", Filter),
    ("scorer", Scorer),
    ("picker", Picker),
    ("profile handler", ProfileHandler),
)


@dataclass(frozen=True, slots=True)
class SchedulerParts:
    """What a scheduler is made of, in config order."""

    plugins: Mapping[str, Plugin]
    profiles: Mapping[str, Profile]
    handler: ProfileHandler
    post_schedule: tuple[PostSchedule, ...]


def build_parts(
    config: SchedulerConfig, registry: PluginRegistry, ctx: PluginContext
) -> SchedulerParts:
    """Instantiate every declared plugin and compile every profile."""
    plugins: dict[str, Plugin] = {}
    for i, spec in enumerate(config.plugins):
        plugins[spec.plugin_name] = registry.create(spec, ctx, path=f"plugins[{i}]")
    profiles = {
        spec.name: _compile_profile(spec, f"profiles[{p}]", plugins)
        for p, spec in enumerate(config.profiles)
    }
    handler = _handler(config, plugins)
    post = [p for p in plugins.values() if isinstance(p, PostSchedule)]
    if handler not in plugins.values() and isinstance(handler, PostSchedule):
        post.append(handler)
    return SchedulerParts(plugins, profiles, handler, tuple(post))


def roles(plugin: Plugin) -> list[str]:
    """The scheduling roles a plugin implements (``filter``, ``scorer``, ...)."""
    return [role for role, protocol in _ROLES if isinstance(plugin, protocol)]


def _compile_profile(spec: ProfileSpec, path: str, plugins: Mapping[str, Plugin]) -> Profile:
    filters: list[Filter] = []
    scorers: list[WeightedScorer] = []
    pickers: list[Picker] = []
    for r, ref in enumerate(spec.plugins):
        plugin = plugins[ref.ref]
        ref_path = f"{path}.plugins[{r}]"
        if not isinstance(plugin, Filter | Scorer | Picker):
            what = ", ".join(roles(plugin)) or "not a scheduling plugin"
            message = f"plugin {ref.ref!r} is not a filter, scorer or picker ({what})"
            raise ConfigError(message, f"{ref_path}.ref")
        if "weight" in ref.model_fields_set and not isinstance(plugin, Scorer):
            message = f"weight applies only to scorers; {ref.ref!r} is a {roles(plugin)[0]}"
            raise ConfigError(message, f"{ref_path}.weight")
        if isinstance(plugin, Filter):
            filters.append(plugin)
        if isinstance(plugin, Scorer):
            scorers.append(WeightedScorer(plugin, ref.weight))
        if isinstance(plugin, Picker):
            if pickers:
                message = (
                    f"profile {spec.name!r} has a second picker {ref.ref!r} "
                    f"(first: {pickers[0].name!r}); a profile has exactly one picker"
                )
                raise ConfigError(message, f"{ref_path}.ref")
            pickers.append(plugin)
    if not pickers:
        message = f"profile {spec.name!r} has no picker; reference exactly one (e.g. max-score)"
        raise ConfigError(message, f"{path}.plugins")
    return Profile(spec.name, tuple(filters), tuple(scorers), pickers[0])


def _handler(config: SchedulerConfig, plugins: Mapping[str, Plugin]) -> ProfileHandler:
    if config.profile_handler is None:
        return SingleProfileHandler("single")
    plugin = plugins[config.profile_handler]
    if not isinstance(plugin, ProfileHandler):
        what = ", ".join(roles(plugin)) or "not a scheduling plugin"
        message = f"plugin {config.profile_handler!r} is not a profile handler ({what})"
        raise ConfigError(message, "profile_handler")
    return plugin
