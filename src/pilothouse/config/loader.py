"""Load YAML into pydantic models, with every error naming the path of the bad field."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from pilothouse.errors import ConfigError

M = TypeVar("M", bound=BaseModel)


def read_yaml(path: str | Path) -> Any:
    """Parse a YAML file; a missing file or a syntax error is a :class:`ConfigError`."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read {p}: {exc.strerror or exc}") from exc
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{p} is not valid YAML: {exc}") from exc


def validate_model(model: type[M], data: Any, source: str = "") -> M:
    """Validate ``data`` against ``model``; errors carry ``a.b[2].c`` style paths."""
    if not isinstance(data, Mapping):
        where = f"{source}: " if source else ""
        raise ConfigError(f"{where}expected a mapping at the top level, got {type(data).__name__}")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise config_error_from(exc, source) from exc


def config_error_from(exc: ValidationError, source: str = "") -> ConfigError:
    """One :class:`ConfigError` listing every problem pydantic found, each with its path."""
    problems = [f"{format_loc(e['loc'])}: {_message(e)}" for e in exc.errors()]
    first = exc.errors()[0]
    prefix = f"{source}: " if source else ""
    return ConfigError(prefix + "; ".join(problems), path=format_loc(first["loc"]))


def format_loc(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "<root>"


def _message(error: Mapping[str, Any]) -> str:
    if error["type"] == "extra_forbidden":
        return "unknown field"
    return str(error["msg"])
