"""The InferencePool (``inference.networking.k8s.io/v1``): which pods serve a model, and which
endpoint picker chooses among them."""

from __future__ import annotations

from pilothouse.controlplane.render.epp import GRPC_PORT, epp_name
from pilothouse.controlplane.render.meta import POOL_LABEL, Manifest, metadata
from pilothouse.controlplane.render.options import MODEL_PORT, ModelPlan, RenderOptions
from pilothouse.controlplane.render.params import Binder

API_VERSION = "inference.networking.k8s.io/v1"


def inference_pool(plan: ModelPlan, options: RenderOptions, bind: Binder) -> Manifest:
    return {
        "apiVersion": API_VERSION,
        "kind": "InferencePool",
        "metadata": metadata(plan.slug, options.namespace, bind, "inference-pool", plan.slug),
        "spec": {
            "selector": {"matchLabels": {POOL_LABEL: plan.slug}},
            "targetPorts": [{"number": MODEL_PORT}],
            "endpointPickerRef": {
                "kind": "Service",
                "name": epp_name(plan),
                "port": {"number": GRPC_PORT},
                "failureMode": bind(options.failure_mode, "epp", "failureMode"),
            },
        },
    }
