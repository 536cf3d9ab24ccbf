"""The scheduler's YAML config: typed models, the loader and the packaged configs.

A config declares each plugin once (``type``, optional ``name``, ``parameters``) and lists
profiles that reference plugins by name, scorers with a weight::

    plugins:
      - type: ready
      - type: approx-prefix
        name: prefix
        parameters: {block_size: 64}
      - type: least-requests
      - type: max-score
    profiles:
      - name: default
        plugins:
          - ref: ready
          - ref: prefix
            weight: 2
          - ref: least-requests
          - ref: max-score

:func:`load_scheduler_config` checks the structure and the references; plugin types,
parameters and roles (one picker per profile, weights only on scorers) need a plugin
registry and are checked by :func:`resolve_config`, ``validate_config`` and
``build_scheduler`` (:mod:`pilothouse.scheduling.scheduler`).
"""

from __future__ import annotations

from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from pilothouse.errors import ConfigError
from pilothouse.scheduling.validation import config_error

if TYPE_CHECKING:
    from pilothouse.scheduling.registry import PluginRegistry

_CONFIGS = "configs"


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class PluginSpec(_Spec):
    """One plugin instance; ``name`` (unique in the config) defaults to ``type``."""

    type: str = Field(min_length=1)
    name: str | None = None
    parameters: dict[str, object] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _default_name(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and data.get("name") is None and "type" in data:
            return {**data, "name": data["type"]}
        return data

    @property
    def plugin_name(self) -> str:
        """The name profiles refer to (``name``, else ``type``)."""
        return self.name or self.type


class PluginRef(_Spec):
    """A reference from a profile to a declared plugin; ``weight`` applies to scorers only."""

    ref: str = Field(min_length=1)
    weight: float = Field(default=1.0, ge=0.0, allow_inf_nan=False)


class ProfileSpec(_Spec):
    """A named pipeline: filters, weighted scorers and exactly one picker."""

    name: str = Field(min_length=1)
    plugins: list[PluginRef]


class SchedulerConfig(_Spec):
    """The whole scheduler config; references are checked when it is constructed."""

    plugins: list[PluginSpec]
    profiles: list[ProfileSpec]
    profile_handler: str | None = None

    @model_validator(mode="after")
    def _check_references(self) -> SchedulerConfig:
        declared = _check_plugin_names(self.plugins)
        _check_profiles(self.profiles, declared)
        if self.profile_handler is not None and self.profile_handler not in declared:
            raise ConfigError(_unknown(self.profile_handler, declared), "profile_handler")
        return self


def _unknown(name: str, declared: Mapping[str, int]) -> str:
    listed = ", ".join(declared) or "none"
    return f"unknown plugin {name!r} (declared: {listed})"


def _check_plugin_names(plugins: list[PluginSpec]) -> dict[str, int]:
    declared: dict[str, int] = {}
    for i, spec in enumerate(plugins):
        name = spec.plugin_name
        if name in declared:
            first = f"plugins[{declared[name]}]"
            raise ConfigError(
                f"duplicate plugin name {name!r} (first at {first})", f"plugins[{i}].name"
            )
        declared[name] = i
    return declared


def _check_profiles(profiles: list[ProfileSpec], declared: Mapping[str, int]) -> None:
    if not profiles:
        raise ConfigError("at least one profile is required", "profiles")
    seen: set[str] = set()
    for p, profile in enumerate(profiles):
        if profile.name in seen:
            raise ConfigError(f"duplicate profile name {profile.name!r}", f"profiles[{p}].name")
        seen.add(profile.name)
        refs: set[str] = set()
        for r, ref in enumerate(profile.plugins):
            path = f"profiles[{p}].plugins[{r}].ref"
            if ref.ref not in declared:
                raise ConfigError(_unknown(ref.ref, declared), path)
            if ref.ref in refs:
                raise ConfigError(f"plugin {ref.ref!r} is referenced twice in this profile", path)
            refs.add(ref.ref)


def load_scheduler_config(source: str | Path | Mapping[str, object]) -> SchedulerConfig:
    """Load a config from a YAML file path or an already-parsed mapping."""
    document = source if isinstance(source, Mapping) else _read_yaml(Path(source))
    if not isinstance(document, Mapping):
        kind = "an empty document" if document is None else type(document).__name__
        raise ConfigError(f"expected a mapping with 'plugins' and 'profiles', got {kind}")
    try:
        return SchedulerConfig.model_validate(dict(document))
    except ValidationError as exc:
        raise config_error(exc) from exc


def _read_yaml(path: Path) -> object:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read scheduler config {str(path)!r}: {exc.strerror}") from exc
    return _parse_yaml(text, str(path))


def _parse_yaml(text: str, origin: str) -> object:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        where = ""
        mark = getattr(exc, "problem_mark", None)
        if mark is not None:
            where = f" at line {mark.line + 1}, column {mark.column + 1}"
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"invalid YAML in {origin}{where}: {problem}") from exc


def builtin_config_names() -> list[str]:
    """Names of the configs packaged with pilothouse (``default``, ``round-robin``, ...)."""
    folder = resources.files(__package__ or "pilothouse.scheduling").joinpath(_CONFIGS)
    return sorted(p.name[: -len(".yaml")] for p in folder.iterdir() if p.name.endswith(".yaml"))


def builtin_config(name: str) -> SchedulerConfig:
    """A packaged config by name; ConfigError listing the names when there is none."""
    if name not in builtin_config_names():
        known = ", ".join(builtin_config_names())
        raise ConfigError(f"unknown builtin scheduler config {name!r} (builtin: {known})")
    folder = resources.files(__package__ or "pilothouse.scheduling").joinpath(_CONFIGS)
    text = folder.joinpath(f"{name}.yaml").read_text(encoding="utf-8")
    document = _parse_yaml(text, f"builtin config {name!r}")
    if not isinstance(document, Mapping):
        raise ConfigError(f"builtin config {name!r} is not a mapping")
    return load_scheduler_config(document)


def resolve_config(name_or_path: str, *, registry: PluginRegistry | None = None) -> SchedulerConfig:
    """A builtin config by name, else a YAML file by path, fully validated.

    Unlike :func:`load_scheduler_config` it also checks plugin types, parameters and roles
    against ``registry`` (the built-in plugins when ``None``), so a command line fails at
    startup on any config error.
    """
    from pilothouse.scheduling.scheduler import validate_config  # imports this module

    if name_or_path in builtin_config_names():
        config = builtin_config(name_or_path)
    elif Path(name_or_path).is_file():
        config = load_scheduler_config(Path(name_or_path))
    else:
        known = ", ".join(builtin_config_names())
        raise ConfigError(
            f"{name_or_path!r} is neither a builtin scheduler config ({known}) nor a YAML file"
        )
    validate_config(config, registry=registry)
    return config
