"""Load YAML into pydantic models, with every error naming the path of the bad field."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from pilothouse.errors import ConfigError, PilothouseError

M = TypeVar("M", bound=BaseModel)
Loc = tuple[int | str, ...]


class SpecProblems(PilothouseError, ValueError):
    """Every problem one validator found, each at a path relative to where it runs.

    A :class:`ValueError` too: pydantic turns only that (and assertions) raised in a
    validator into a ``ValidationError``.

    A cross-field validator collects with :meth:`add` and ends with :meth:`raise_if_any`;
    :func:`config_error_from` turns each problem into its own line with its full path
    (``models[1].autoscaling.max_replicas: ...``) instead of one message at the parent.
    """

    def __init__(self) -> None:
        self.problems: list[tuple[Loc, str]] = []
        super().__init__("")

    def add(self, loc: Loc, message: str) -> None:
        self.problems.append((loc, message))

    def raise_if_any(self) -> None:
        if self.problems:
            self.args = ("; ".join(f"{format_loc(loc)}: {msg}" for loc, msg in self.problems),)
            raise self


def read_yaml(path: str | Path) -> Any:
    """Parse a YAML file; a missing or non-UTF-8 file, or bad syntax, is a :class:`ConfigError`."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read {p}: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        line = exc.object[: exc.start].count(b"\n") + 1
        raise ConfigError(
            f"{p} is not UTF-8 text: byte 0x{exc.object[exc.start]:02x} on line {line}"
        ) from exc
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
    """One :class:`ConfigError` listing every problem pydantic found, each with its path.

    ``problems`` holds one ``path: message`` line per problem, in document order.
    """
    found = list(_problems(exc))
    problems = [f"{format_loc(loc)}: {message}" for loc, message in found]
    prefix = f"{source}: " if source else ""
    return ConfigError(
        prefix + "; ".join(problems), path=format_loc(found[0][0]), problems=problems
    )


def _problems(exc: ValidationError) -> Iterator[tuple[Loc, str]]:
    for error in exc.errors():
        nested = error.get("ctx", {}).get("error")
        if isinstance(nested, SpecProblems):
            for loc, message in nested.problems:
                yield (*error["loc"], *loc), message
        else:
            yield tuple(error["loc"]), _message(error)


def format_loc(loc: Loc) -> str:
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
    cause = error.get("ctx", {}).get("error")
    if error["type"] == "value_error" and isinstance(cause, ValueError):
        return str(cause)  # without pydantic's "Value error, " prefix
    return str(error["msg"])
