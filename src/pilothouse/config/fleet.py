"""The Fleet spec: which models to serve, on which engine, and how the gateway behaves.

A minimal example (``examples/fleet-embedded.yaml``)::

    apiVersion: pilothouse.dev/v1alpha1
    kind: Fleet
    models:
      - name: smollm2-135m-instruct
        engine: llamacpp
        replicas: 2
    gateway:
      port: 8000
      scheduler: default

Every field is documented in ``docs/configuration.md``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from pilothouse.config.loader import read_yaml, validate_model

EMBEDDED_MODEL_NAME = "smollm2-135m-instruct"
_ADDRESS = re.compile(r"^(https?://)?[A-Za-z0-9_.\-\[\]:]+:\d{1,5}/?$")

EngineKind = Literal["llamacpp", "vllm", "sim", "sglang", "openai"]
ArgValue = str | int | float | bool


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelSpec(_Spec):
    """One served model: launched replicas, or addresses of servers already running."""

    name: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:/\-]*$")
    engine: EngineKind = "llamacpp"
    source: str = "embedded"
    replicas: int = Field(default=2, ge=0, le=64)
    args: dict[str, ArgValue] = Field(default_factory=dict)
    endpoints: list[str] = Field(default_factory=list)

    @field_validator("endpoints")
    @classmethod
    def _addresses(cls, value: list[str]) -> list[str]:
        for i, address in enumerate(value):
            if not _ADDRESS.match(address):
                raise ValueError(f"endpoints[{i}] '{address}' is not host:port or http://host:port")
        return [a.removeprefix("http://").removeprefix("https://").rstrip("/") for a in value]

    @property
    def launched(self) -> bool:
        """True when pilothouse starts this model's replicas itself."""
        return not self.endpoints


class GatewaySpec(_Spec):
    """How the gateway listens, authenticates, schedules and forwards."""

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    api_key: str | None = Field(default=None, min_length=1)
    scheduler: str = "default"
    max_body_bytes: int = Field(default=10 * 1024 * 1024, gt=0)
    connect_timeout_s: float = Field(default=5.0, gt=0)
    read_timeout_s: float = Field(default=600.0, gt=0)
    probe_interval_s: float = Field(default=0.5, gt=0)
    access_log: bool = True
    log_prompts: bool = False


class FleetSpec(_Spec):
    """The whole fleet: models and the gateway in front of them."""

    api_version: Literal["pilothouse.dev/v1alpha1"] = Field(
        default="pilothouse.dev/v1alpha1", alias="apiVersion"
    )
    kind: Literal["Fleet"] = "Fleet"
    models: list[ModelSpec] = Field(min_length=1)
    gateway: GatewaySpec = Field(default_factory=GatewaySpec)

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @model_validator(mode="after")
    def _unique_names(self) -> FleetSpec:
        seen: set[str] = set()
        for model in self.models:
            if model.name in seen:
                raise ValueError(f"model name '{model.name}' is declared twice")
            seen.add(model.name)
        return self


def load_fleet(path: str | Path) -> FleetSpec:
    return validate_model(FleetSpec, read_yaml(path), source=str(path))


def embedded_fleet(replicas: int = 2, port: int = 8000) -> FleetSpec:
    """The fleet ``pilothouse up`` runs without a file: the bundled SmolLM2 on llama.cpp."""
    return FleetSpec(
        models=[ModelSpec(name=EMBEDDED_MODEL_NAME, engine="llamacpp", replicas=replicas)],
        gateway=GatewaySpec(port=port),
    )
