"""A watched YAML file of endpoints: discovery for local use, without Kubernetes.

The file is a list of replicas::

    - address: 127.0.0.1:8001          # required, host:port
      name: replica-a                  # default: the address
      model: llama                     # default: "default"
      engine: vllm                     # default: vllm (decides health and metrics paths)
      labels: {llm-d.ai/role: decode}  # default: none

The source polls the file's modification time and size (no dependency, works on every
filesystem, including ConfigMap volumes whose symlinks are swapped atomically) and reports
the whole set whenever it changes. A broken edit is logged and ignored: the last good set
stays in force until the file is fixed.
"""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path
from types import MappingProxyType

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from pilothouse.endpoints.discovery import EndpointSink
from pilothouse.errors import ConfigError
from pilothouse.scheduling.types import Endpoint

log = logging.getLogger("pilothouse.discovery")

DEFAULT_MODEL = "default"


class EndpointEntry(BaseModel):
    """One line of the file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    address: str = Field(min_length=3)
    name: str | None = Field(default=None, min_length=1)
    model: str = Field(default=DEFAULT_MODEL, min_length=1)
    engine: str = Field(default="vllm", min_length=1)
    labels: dict[str, str] = Field(default_factory=dict)

    @field_validator("address")
    @classmethod
    def _host_port(cls, value: str) -> str:
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"must be host:port, got {value!r}")
        return value

    def endpoint(self) -> Endpoint:
        return Endpoint(
            name=self.name or self.address,
            address=self.address,
            model=self.model,
            engine=self.engine,
            labels=MappingProxyType(dict(self.labels)),
        )


def parse_endpoints(text: str, origin: str = "endpoints file") -> list[Endpoint]:
    """Endpoints from the file's text; ConfigError with the path of the bad field."""
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"invalid YAML in {origin}: {exc}") from exc
    if document is None:
        return []
    if not isinstance(document, list):
        raise ConfigError(f"{origin} must be a list of endpoints, got {type(document).__name__}")
    endpoints: list[Endpoint] = []
    seen: dict[str, int] = {}
    for i, item in enumerate(document):
        try:
            entry = EndpointEntry.model_validate(item)
        except ValidationError as exc:
            error = exc.errors()[0]
            field = ".".join(str(part) for part in error["loc"])
            path = f"[{i}].{field}" if field else f"[{i}]"
            raise ConfigError(error["msg"], path) from exc
        endpoint = entry.endpoint()
        if endpoint.name in seen:
            raise ConfigError(
                f"duplicate endpoint name {endpoint.name!r} (first at [{seen[endpoint.name]}])",
                f"[{i}].name",
            )
        seen[endpoint.name] = i
        endpoints.append(endpoint)
    return endpoints


class FileSource:
    """Reports the endpoints listed in ``path``, then every change to the file."""

    def __init__(self, path: str | Path, *, poll_interval_s: float = 1.0) -> None:
        if poll_interval_s <= 0:
            raise ValueError("poll_interval_s must be > 0")
        self.path = Path(path)
        self._interval = poll_interval_s

    def load(self) -> list[Endpoint]:
        """Read and parse the file now (ConfigError when it is missing or invalid)."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot read endpoints file {str(self.path)!r}: {exc}") from exc
        return parse_endpoints(text, str(self.path))

    async def run(self, sink: EndpointSink) -> None:
        """Report the current set (ConfigError if the file is bad at start), then changes."""
        stamp = self._stamp()
        sink(self.load())
        last_error: str | None = None
        while True:
            await asyncio.sleep(self._interval)
            current = self._stamp()
            if current == stamp:
                continue
            stamp = current
            try:
                endpoints = self.load()
            except ConfigError as exc:
                if str(exc) != last_error:
                    log.warning("ignoring the changed endpoints file: %s", exc)
                last_error = str(exc)
                continue
            last_error = None
            log.info("endpoints file changed: %d endpoint(s)", len(endpoints))
            sink(endpoints)

    def _stamp(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self.path)  # follows symlinks: a swapped ConfigMap link counts
        except OSError:
            return None
        return st.st_mtime_ns, st.st_size, st.st_ino
