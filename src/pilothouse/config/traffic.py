"""LoRA adapters of a model, and traffic splits between model versions (canary).

Both are declared and validated today; the runtime that serves them (dynamic adapter
loading, weighted routing behind one public name) comes with their own work items, and
``pilothouse up`` says so when a fleet declares them.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from pilothouse.config.loader import SpecProblems
from pilothouse.config.sources import parse_source

MODEL_NAME = r"^[A-Za-z0-9][A-Za-z0-9._:/\-]*$"


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AdapterSpec(_Spec):
    """A LoRA adapter served under its own model name by its base model's replicas."""

    name: str = Field(min_length=1, max_length=128, pattern=MODEL_NAME)
    source: str = Field(min_length=1)
    """A local path, ``hf://ORG/NAME`` or ``s3://BUCKET/KEY`` (not ``embedded``)."""

    @field_validator("source")
    @classmethod
    def _source(cls, value: str) -> str:
        if parse_source(value).kind == "embedded":
            raise ValueError("an adapter needs a path, hf:// or s3:// source")
        return value


class VersionWeight(_Spec):
    """One version behind a public name and its share of the traffic."""

    model: str = Field(min_length=1)
    """The ``name`` of a model of this fleet."""
    weight: int = Field(ge=0, le=1000)
    """Relative weight; shares are weight / sum of weights."""


class TrafficSplit(_Spec):
    """A public model name whose requests are split across model versions (canary)."""

    name: str = Field(min_length=1, max_length=128, pattern=MODEL_NAME)
    versions: list[VersionWeight] = Field(min_length=1)

    @model_validator(mode="after")
    def _weights(self) -> TrafficSplit:
        problems = SpecProblems()
        seen: set[str] = set()
        for i, version in enumerate(self.versions):
            if version.model in seen:
                problems.add(("versions", i, "model"), f"'{version.model}' is listed twice")
            seen.add(version.model)
        if not any(v.weight for v in self.versions):
            problems.add(("versions",), "at least one weight must be above 0")
        problems.raise_if_any()
        return self

    def shares(self) -> dict[str, float]:
        """Each version's fraction of the traffic."""
        total = sum(v.weight for v in self.versions)
        return {v.model: v.weight / total for v in self.versions}
