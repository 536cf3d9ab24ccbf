"""Object metadata and the label conventions every rendered object shares."""

from __future__ import annotations

from typing import Any

from pilothouse.controlplane.render.params import Binder

Manifest = dict[str, Any]

PART_OF = "app.kubernetes.io/part-of"
MANAGED_BY = "app.kubernetes.io/managed-by"
COMPONENT = "app.kubernetes.io/component"
MODEL_LABEL = "pilothouse.dev/model"  # on every object of one model; groups Helm templates
POOL_LABEL = "pilothouse.dev/pool"  # on model-server pods only: what the InferencePool selects
EPP_LABEL = "pilothouse.dev/epp"  # on endpoint-picker pods only
ENGINE_LABEL = "llm-d.ai/engine-type"  # read by the picker to choose the metrics mapping
AGENT_LABEL = "pilothouse.dev/agent"  # on every object of one agent; its pods are selected by it


def labels(component: str, model_slug: str | None = None) -> dict[str, str]:
    out = {PART_OF: "pilothouse", MANAGED_BY: "pilothouse", COMPONENT: component}
    if model_slug is not None:
        out[MODEL_LABEL] = model_slug
    return out


def metadata(
    name: str, namespace: str, bind: Binder, component: str, model_slug: str | None = None
) -> Manifest:
    return {
        "name": name,
        "namespace": bind.namespace(namespace),
        "labels": labels(component, model_slug),
    }


def http_probe(path: str, port: str, period_s: int, failures: int) -> Manifest:
    return {
        "httpGet": {"path": path, "port": port},
        "periodSeconds": period_s,
        "timeoutSeconds": 5,
        "failureThreshold": failures,
    }


def env_from_field(name: str, field_path: str) -> Manifest:
    """An environment variable from the downward API (``status.podIP``, ...)."""
    return {"name": name, "valueFrom": {"fieldRef": {"fieldPath": field_path}}}
