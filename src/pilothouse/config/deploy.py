"""Where a fleet runs: resources per replica, Kubernetes settings, local executor settings.

``resources`` and ``image`` are per model; ``kubernetes`` and ``local`` are fleet-wide and
read only by their executor (``pilothouse render k8s`` / ``pilothouse up``). Every field is
documented in ``docs/configuration.md``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from pilothouse import __version__
from pilothouse.config.loader import SpecProblems

#: A Kubernetes resource quantity (``250m``, ``4``, ``16Gi``, ``1.5``).
QUANTITY = r"^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$"
#: A DNS-1035 label short enough to take suffixes such as ``-epp``.
K8S_NAME = r"^[a-z]([-a-z0-9]{0,48}[a-z0-9])?$"
DNS_LABEL = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"
#: The image the repository's ``Containerfile`` builds (gateway, picker, simulator and
#: llama.cpp servers in one), tagged with this package's version: a moving ``latest`` with
#: ``imagePullPolicy: IfNotPresent`` lets each node keep whichever build it pulled first.
PILOTHOUSE_IMAGE = f"ghcr.io/pilothouse/pilothouse:{__version__}"


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ResourcesSpec(_Spec):
    """What one replica needs; unset values get per-engine defaults when rendering."""

    gpus: int | None = Field(default=None, ge=0, le=64)
    """GPUs per replica (vLLM default: tensor x pipeline parallel size)."""
    cpu: str | None = Field(default=None, pattern=QUANTITY)
    """CPU request (vLLM default ``4``, sim ``250m``)."""
    memory: str | None = Field(default=None, pattern=QUANTITY)
    """Memory request and limit (vLLM default ``16Gi``, sim ``256Mi``)."""


class KubernetesSpec(_Spec):
    """Fleet-wide settings of ``pilothouse render k8s | helm`` (its flags override them)."""

    namespace: str = Field(default="default", pattern=DNS_LABEL)
    gateway_name: str = Field(default="inference-gateway", pattern=DNS_LABEL)
    gateway_class: str = Field(default="istio", min_length=1)
    autoscaler: Literal["hpa", "keda", "none"] = "hpa"
    prometheus_url: str = Field(
        default="http://prometheus-operated.monitoring.svc:9090", pattern=r"^https?://\S+$"
    )
    vllm_image: str = Field(default="vllm/vllm-openai:latest", min_length=1)
    pilothouse_image: str = Field(default=PILOTHOUSE_IMAGE, min_length=1)
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = "IfNotPresent"
    picker_replicas: int = Field(default=1, ge=1, le=16)
    failure_mode: Literal["FailOpen", "FailClose"] = "FailClose"


class LocalSpec(_Spec):
    """How ``pilothouse up`` supervises replica processes."""

    restart_backoff_s: float = Field(default=1.0, gt=0)
    """Delay before restarting a crashed replica, or a fleet service (tool gateway, agents)
    that exited; doubles with each consecutive crash."""
    restart_backoff_max_s: float = Field(default=30.0, gt=0)
    """The longest restart delay."""
    restart_reset_s: float = Field(default=60.0, gt=0)
    """A replica ready this long (a service: running this long) forgets its earlier
    crashes."""
    start_timeout_s: float = Field(default=300.0, gt=0)
    """A replica not healthy this long after its start is killed and restarted."""
    probe_timeout_s: float = Field(default=2.0, gt=0)
    """How long one health probe of a replica may take before it counts as failed."""
    liveness_interval_s: float = Field(default=2.0, gt=0)
    """How often a ready replica is health-probed."""
    liveness_failures: int = Field(default=3, ge=1)
    """A ready replica that fails this many probes in a row (hung) is restarted."""
    drain_timeout_s: float = Field(default=30.0, gt=0)
    """On scale-down, longest wait for a replica's in-flight requests before it is stopped."""
    stop_grace_s: float = Field(default=10.0, gt=0)
    """Between SIGTERM and SIGKILL."""
    reconcile_interval_s: float = Field(default=0.5, gt=0)
    """How often observed state is compared with the spec."""
    watch_interval_s: float = Field(default=1.0, gt=0)
    """``up -f FILE`` checks the file's modification time this often."""
    watch_debounce_s: float = Field(default=0.5, ge=0)
    """A changed file is read once it has been quiet this long."""
    tool_gateway_port: int = Field(default=8100, ge=0, le=65535)
    """Where ``up`` serves the tool gateway (``/mcp``) of a fleet with ``tools:`` (0: any
    free port), on the gateway's host."""
    agents_port: int = Field(default=8300, ge=0, le=65535)
    """Where ``up`` serves a fleet's agents (``/v1/responses``, A2A), on the gateway's host."""
    service_ready_timeout_s: float = Field(default=60.0, gt=0)
    """Longest the tool gateway or the agent service may take to start."""

    @model_validator(mode="after")
    def _backoff(self) -> LocalSpec:
        problems = SpecProblems()
        if self.restart_backoff_max_s < self.restart_backoff_s:
            problems.add(("restart_backoff_max_s",), "is below restart_backoff_s")
        problems.raise_if_any()
        return self
