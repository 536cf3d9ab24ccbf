"""Gateway API objects: the HTTPRoute from a named Gateway to a model's InferencePool, and an
example Gateway (``--with-gateway``).

With one model the route takes every path. With several, each route also matches the
``X-Gateway-Model-Name`` header, which the Inference Extension's body-based router sets from
the request's ``model`` field (install it alongside the gateway).
"""

from __future__ import annotations

from pilothouse.config.fleet import FleetSpec
from pilothouse.controlplane.render.meta import Manifest, metadata
from pilothouse.controlplane.render.options import ModelPlan, RenderOptions
from pilothouse.controlplane.render.params import Binder

API_VERSION = "gateway.networking.k8s.io/v1"
MODEL_HEADER = "X-Gateway-Model-Name"


def http_route(
    plan: ModelPlan, fleet: FleetSpec, options: RenderOptions, bind: Binder, *, by_model: bool
) -> Manifest:
    match: Manifest = {"path": {"type": "PathPrefix", "value": "/"}}
    if by_model:
        match["headers"] = [{"type": "Exact", "name": MODEL_HEADER, "value": plan.spec.name}]
    timeout = f"{max(1, round(fleet.gateway.read_timeout_s))}s"  # streams can be long
    return {
        "apiVersion": API_VERSION,
        "kind": "HTTPRoute",
        "metadata": metadata(plan.slug, options.namespace, bind, "route", plan.slug),
        "spec": {
            "parentRefs": [
                {
                    "group": "gateway.networking.k8s.io",
                    "kind": "Gateway",
                    "name": bind(options.gateway_name, "gateway", "name"),
                }
            ],
            "rules": [
                {
                    "matches": [match],
                    "backendRefs": [
                        {
                            "group": "inference.networking.k8s.io",
                            "kind": "InferencePool",
                            "name": plan.slug,
                        }
                    ],
                    "timeouts": {"request": timeout},
                }
            ],
        },
    }


def gateway(options: RenderOptions, bind: Binder) -> Manifest:
    return {
        "apiVersion": API_VERSION,
        "kind": "Gateway",
        "metadata": metadata(options.gateway_name, options.namespace, bind, "gateway"),
        "spec": {
            "gatewayClassName": options.gateway_class,
            "listeners": [{"name": "http", "protocol": "HTTP", "port": 80}],
        },
    }
