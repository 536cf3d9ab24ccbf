"""Autoscaling on the queue, not on CPU: an HPA (``autoscaling/v2``, default) on the per-pod
custom metric a Prometheus adapter exposes for ``vllm:num_requests_waiting``, or a KEDA
ScaledObject running the Prometheus query itself (``--autoscaling keda``)."""

from __future__ import annotations

from pilothouse.controlplane.render.meta import Manifest, metadata
from pilothouse.controlplane.render.options import ModelPlan, RenderOptions
from pilothouse.controlplane.render.params import Binder

COMPONENT = "autoscaler"


def _target(plan: ModelPlan) -> Manifest:
    return {"apiVersion": "apps/v1", "kind": "Deployment", "name": plan.slug}


def autoscaler(plan: ModelPlan, options: RenderOptions, bind: Binder) -> Manifest | None:
    kind = options.autoscaling.kind
    if kind == "hpa":
        return hpa(plan, options, bind)
    if kind == "keda":
        return scaled_object(plan, options, bind)
    return None


def hpa(plan: ModelPlan, options: RenderOptions, bind: Binder) -> Manifest:
    auto = options.autoscaling
    path = ("models", plan.slug, "autoscaling")
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": metadata(plan.slug, options.namespace, bind, COMPONENT, plan.slug),
        "spec": {
            "scaleTargetRef": _target(plan),
            "minReplicas": bind(plan.min_replicas, *path, "minReplicas"),
            "maxReplicas": bind(plan.max_replicas, *path, "maxReplicas"),
            "metrics": [
                {
                    "type": "Pods",
                    "pods": {
                        "metric": {"name": bind(auto.hpa_metric, "autoscaling", "hpaMetric")},
                        "target": {
                            "type": "AverageValue",
                            "averageValue": bind(str(auto.target_waiting), *path, "targetWaiting"),
                        },
                    },
                }
            ],
            "behavior": {
                "scaleUp": {
                    "stabilizationWindowSeconds": 0,
                    "policies": [{"type": "Pods", "value": 2, "periodSeconds": 60}],
                },
                "scaleDown": {
                    "stabilizationWindowSeconds": 300,
                    "policies": [{"type": "Pods", "value": 1, "periodSeconds": 120}],
                },
            },
        },
    }


def scaled_object(plan: ModelPlan, options: RenderOptions, bind: Binder) -> Manifest:
    auto = options.autoscaling
    path = ("models", plan.slug, "autoscaling")
    query = f'sum(vllm:num_requests_waiting{{model_name="{plan.spec.name}"}})'
    return {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": metadata(plan.slug, options.namespace, bind, COMPONENT, plan.slug),
        "spec": {
            "scaleTargetRef": _target(plan),
            "minReplicaCount": bind(plan.min_replicas, *path, "minReplicas"),
            "maxReplicaCount": bind(plan.max_replicas, *path, "maxReplicas"),
            "pollingInterval": 15,
            "cooldownPeriod": 300,
            "triggers": [
                {
                    "type": "prometheus",
                    "metadata": {
                        "serverAddress": bind(auto.prometheus_url, "autoscaling", "prometheusUrl"),
                        "query": bind(query, *path, "query"),
                        # KEDA's default metric type is AverageValue: a threshold per replica.
                        "threshold": bind(str(auto.target_waiting), *path, "targetWaiting"),
                    },
                }
            ],
        },
    }
