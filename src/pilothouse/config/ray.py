"""The ``ray`` section of a Fleet: how ``pilothouse up --executor ray`` joins a Ray cluster.

Read only by the Ray executor (:mod:`pilothouse.controlplane.ray_runtime`); the supervision
settings (restarts, draining, timeouts) stay in ``local``, which both executors follow.
Every field is documented in ``docs/configuration.md`` and ``docs/ray.md``.
"""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field, field_validator

_ADDRESS = re.compile(r"^(auto|[A-Za-z0-9_.\-\[\]:]+:\d{1,5})$")


class RaySpec(BaseModel):
    """Where the Ray executor runs replicas (``pilothouse up --executor ray``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    address: str | None = None
    """The cluster to join: ``HOST:PORT`` of the head (its GCS port, 6379 by default) or
    ``auto`` (the cluster started on this machine with ``ray start``). Unset: ``RAY_ADDRESS``
    if set, else the latest cluster started on this machine, else a private Ray instance
    started with ``pilothouse up`` and stopped with it. ``--ray-address`` overrides it."""
    namespace: str = Field(default="pilothouse", min_length=1, max_length=64)
    """Ray namespace of the replica actors."""
    start_timeout_s: float = Field(default=120.0, gt=0)
    """Longest wait for a replica's actor to be placed on a node and its engine process to
    start; past it the start counts as a crash (and is retried with the restart backoff)."""

    @field_validator("address")
    @classmethod
    def _address(cls, value: str | None) -> str | None:
        if value is not None and not _ADDRESS.match(value):
            raise ValueError(
                f"'{value}' is not HOST:PORT or 'auto' (Ray Client ray:// is not supported)"
            )
        return value
