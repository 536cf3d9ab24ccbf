"""docs/configuration.md documents every field of the Fleet spec."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, get_args

from pydantic import BaseModel

from pilothouse.config.fleet import FleetSpec

DOC = (Path(__file__).parents[3] / "docs" / "configuration.md").read_text()


def _models(annotation: Any) -> Iterator[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        yield annotation
    for arg in get_args(annotation):
        yield from _models(arg)


def _fields(model: type[BaseModel], seen: set[type[BaseModel]]) -> Iterator[tuple[str, str]]:
    seen.add(model)
    for name, info in model.model_fields.items():
        yield model.__name__, info.alias or name
        for nested in _models(info.annotation):
            if nested not in seen:
                yield from _fields(nested, seen)


def test_every_field_is_documented() -> None:
    """As ``name`` or as a dotted path through it (``hold.timeout_s``, ``versions[].model``)."""
    missing = [
        f"{owner}.{name}"
        for owner, name in _fields(FleetSpec, set())
        if not re.search(rf"`([\w\[\]]+\.)*{re.escape(name)}(`|\.|\[\]\.)", DOC)
    ]
    assert missing == []
