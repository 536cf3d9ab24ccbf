"""Small helpers shared by the built-in plugins."""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import Field

from pilothouse.scheduling.validation import ParametersModel


class NamedPlugin:
    """Holds the unique name a plugin was declared with."""

    __slots__ = ("_name",)

    def __init__(self, name: str) -> None:
        self._name = name

    @property
    def name(self) -> str:
        return self._name

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self._name!r})"


class NoParameters(ParametersModel):
    """For plugins that take no parameters: any key is an error."""


class PickerParameters(ParametersModel):
    """``max_targets``: how many endpoints to return (first is primary, others fallbacks)."""

    max_targets: int | None = Field(default=None, gt=0)


def lower_is_better(values: Sequence[float]) -> list[float]:
    """Min-max normalise so the lowest value scores 1.0 and the highest 0.0; all equal → 1.0."""
    low = min(values)
    high = max(values)
    if high <= low:
        return [1.0] * len(values)
    span = high - low
    return [(high - value) / span for value in values]
