"""The plugin registry: an explicit mapping from a plugin ``type`` to its factory.

There is no global registry. :func:`default_registry` returns a fresh registry holding the
built-in plugins; add your own with :meth:`PluginRegistry.register` and pass the registry to
:func:`pilothouse.scheduling.scheduler.build_scheduler`::

    registry = default_registry()
    registry.register("my-scorer", MyScorer.create)
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from pilothouse.errors import ConfigError
from pilothouse.scheduling.config import PluginSpec
from pilothouse.scheduling.context import PluginContext, PluginFactory
from pilothouse.scheduling.interfaces import Plugin
from pilothouse.scheduling.plugins import builtin_factories
from pilothouse.scheduling.validation import join_path

__all__ = ["PluginContext", "PluginFactory", "PluginRegistry", "default_registry"]


class PluginRegistry:
    """Plugin types by name. Registering a taken name is an error unless ``replace=True``."""

    def __init__(self, factories: Mapping[str, PluginFactory] | None = None) -> None:
        self._factories: dict[str, PluginFactory] = {}
        for type_name, factory in (factories or {}).items():
            self.register(type_name, factory)

    def register(self, type_name: str, factory: PluginFactory, *, replace: bool = False) -> None:
        if not type_name:
            raise ValueError("a plugin type needs a non-empty name")
        if type_name in self._factories and not replace:
            raise ValueError(f"plugin type {type_name!r} is already registered")
        self._factories[type_name] = factory

    def types(self) -> list[str]:
        """The registered type names, sorted."""
        return sorted(self._factories)

    def __contains__(self, type_name: object) -> bool:
        return type_name in self._factories

    def __iter__(self) -> Iterator[str]:
        return iter(self.types())

    def __len__(self) -> int:
        return len(self._factories)

    def create(self, spec: PluginSpec, ctx: PluginContext, *, path: str = "") -> Plugin:
        """Build the plugin ``spec`` declares; errors carry ``path`` (``plugins[2]``) as prefix."""
        factory = self._factories.get(spec.type)
        if factory is None:
            known = ", ".join(self.types()) or "none"
            message = f"unknown plugin type {spec.type!r} (known: {known})"
            raise ConfigError(message, join_path(path, "type"))
        try:
            plugin = factory(spec.plugin_name, spec.parameters, ctx)
        except ConfigError as exc:
            prefix = join_path(path, "parameters")
            raise ConfigError(exc.message, join_path(prefix, exc.path)) from exc
        if not isinstance(plugin, Plugin) or plugin.name != spec.plugin_name:
            raise TypeError(
                f"factory of {spec.type!r} must return a plugin named {spec.plugin_name!r}"
            )
        return plugin


def default_registry() -> PluginRegistry:
    """A fresh registry with every built-in plugin type."""
    return PluginRegistry(builtin_factories())
