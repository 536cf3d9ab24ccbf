"""Turning pydantic validation failures into :class:`~pilothouse.errors.ConfigError`.

Every config problem surfaces as one ``ConfigError`` whose ``path`` names the bad field the
way a user would write it (``profiles[0].plugins[1].weight``). Plugins validate their own
``parameters`` with a small pydantic model through :func:`parse_parameters`; the registry
prefixes the returned path with ``plugins[i].parameters``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from pilothouse.errors import ConfigError

M = TypeVar("M", bound=BaseModel)


class ParametersModel(BaseModel):
    """Base for plugin parameter models: unknown keys and type coercion are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


def join_path(prefix: str, path: str) -> str:
    """``join_path("plugins[0]", "type") == "plugins[0].type"``; indexes attach directly."""
    if not prefix:
        return path
    if not path:
        return prefix
    return f"{prefix}{path}" if path.startswith("[") else f"{prefix}.{path}"


def loc_to_path(loc: Sequence[int | str]) -> str:
    """A pydantic ``loc`` as a path: ``("plugins", 0, "type")`` → ``plugins[0].type``."""
    path = ""
    for part in loc:
        path = f"{path}[{part}]" if isinstance(part, int) else join_path(path, str(part))
    return path


def _message(error: Mapping[str, Any]) -> str:
    kind = error.get("type", "")
    ctx = error.get("ctx") or {}
    if kind == "extra_forbidden":
        return "unknown field"
    if kind == "missing":
        return "required field is missing"
    if kind == "greater_than" and ctx.get("gt") == 0:
        number = "integer" if isinstance(error.get("input"), int) else "number"
        return f"must be a positive {number}"
    if kind in ("int_type", "int_parsing"):
        return "must be an integer"
    if kind in ("float_type", "float_parsing"):
        return "must be a number"
    if kind == "string_type":
        return "must be a string"
    msg = str(error.get("msg", "invalid value"))
    return msg[:1].lower() + msg[1:]


def config_error(exc: ValidationError, prefix: str = "") -> ConfigError:
    """The first error of ``exc`` as a ConfigError; the count of any others is appended."""
    errors = exc.errors()
    first = errors[0]
    message = _message(first)
    if len(errors) > 1:
        message += f" (and {len(errors) - 1} more error(s))"
    return ConfigError(message, join_path(prefix, loc_to_path(first["loc"])))


def parse_parameters(model: type[M], parameters: Mapping[str, object]) -> M:
    """Validate a plugin's ``parameters``; errors carry the parameter's path (``block_size``)."""
    try:
        return model.model_validate(dict(parameters))
    except ValidationError as exc:
        raise config_error(exc) from exc
