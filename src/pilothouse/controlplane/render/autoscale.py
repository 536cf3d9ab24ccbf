"""Autoscaling on LLM signals, not on CPU: an HPA (``autoscaling/v2``, default) on a per-pod
custom metric that a Prometheus adapter exposes, or a KEDA ScaledObject running the
Prometheus query itself (``kubernetes.autoscaler: keda``, which can also scale to zero).

A model's ``autoscaling`` block picks the signal (docs/control-plane.md lists the adapter
rules the HPA metrics need):

==================  ==================================  ==========================
metric              KEDA query (per model)              HPA per-pod metric
==================  ==================================  ==========================
``queue_depth``     running + waiting requests          ``pilothouse_queue_depth``
``kv_cache_usage``  ``vllm:kv_cache_usage_perc``        ``vllm_kv_cache_usage_perc``
``ttft``            p90 of ``vllm:time_to_first_token`` (KEDA only)
==================  ==================================  ==========================

A model without one is scaled on ``vllm:num_requests_waiting`` (target 2 per replica). A
llama.cpp model publishes no metrics: it gets no autoscaler (fixed replicas), and an
``autoscaling`` block on one is refused by
:func:`pilothouse.controlplane.render.options.plan_models`.
"""

from __future__ import annotations

from pilothouse.controlplane.render.meta import Manifest, metadata
from pilothouse.controlplane.render.options import LEGACY_METRIC, ModelPlan, RenderOptions
from pilothouse.controlplane.render.params import Binder
from pilothouse.engines.kind import MetricNames
from pilothouse.engines.registry import engine_kind
from pilothouse.errors import ConfigError

COMPONENT = "autoscaler"
HPA_METRICS = {
    "queue_depth": "pilothouse_queue_depth",
    "kv_cache_usage": "vllm_kv_cache_usage_perc",
}
_LEGACY_UP_S, _LEGACY_DOWN_S, _LEGACY_COOLDOWN_S = 0, 300, 300


def _target(plan: ModelPlan) -> Manifest:
    return {"apiVersion": "apps/v1", "kind": "Deployment", "name": plan.slug}


def autoscaler(plan: ModelPlan, options: RenderOptions, bind: Binder) -> Manifest | None:
    kind = options.autoscaling.kind
    if not plan.autoscaled:  # an engine without metrics (llamacpp): fixed replicas
        return None
    if kind == "hpa":
        return hpa(plan, options, bind)
    if kind == "keda":
        return scaled_object(plan, options, bind)
    return None


def _threshold(plan: ModelPlan, bind: Binder) -> str:
    path = ("models", plan.slug, "autoscaling")
    if plan.metric == LEGACY_METRIC:
        return bind(f"{plan.target:g}", *path, "targetWaiting")
    return bind(f"{plan.target:g}", *path, "target")


def _windows(plan: ModelPlan) -> tuple[int, int]:
    policy = plan.policy
    if policy is None:
        return _LEGACY_UP_S, _LEGACY_DOWN_S
    return round(policy.scale_up_stabilization_s), round(policy.scale_down_stabilization_s)


def hpa(plan: ModelPlan, options: RenderOptions, bind: Binder) -> Manifest:
    auto = options.autoscaling
    path = ("models", plan.slug, "autoscaling")
    metric = bind(auto.hpa_metric, "autoscaling", "hpaMetric")
    if plan.metric != LEGACY_METRIC:
        metric = HPA_METRICS[plan.metric]
    up, down = _windows(plan)
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
                        "metric": {"name": metric},
                        "target": {"type": "AverageValue", "averageValue": _threshold(plan, bind)},
                    },
                }
            ],
            "behavior": {
                "scaleUp": {
                    "stabilizationWindowSeconds": up,
                    "policies": [{"type": "Pods", "value": 2, "periodSeconds": 60}],
                },
                "scaleDown": {
                    "stabilizationWindowSeconds": down,
                    "policies": [{"type": "Pods", "value": 1, "periodSeconds": 120}],
                },
            },
        },
    }


def keda_query(plan: ModelPlan) -> tuple[str, str]:
    """The Prometheus query of a model's metric, and KEDA's metric type for it, in the
    series names its engine kind publishes."""
    names = _metric_names(plan)
    match = f'{{model_name="{plan.spec.name}"}}'
    if plan.metric == "queue_depth":
        running, waiting = f"{names.running}{match}", f"{names.waiting}{match}"
        return f"sum({running}) + sum({waiting})", "AverageValue"
    if plan.metric == "kv_cache_usage":
        return f"sum({names.kv_cache_usage}{match})", "AverageValue"
    if plan.metric == "ttft" and names.ttft_histogram is not None:
        buckets = f"rate({names.ttft_histogram}_bucket{match}[2m])"
        return f"histogram_quantile(0.9, sum by (le) ({buckets}))", "Value"
    if plan.metric == "ttft":
        raise ConfigError(
            f"engine {plan.engine} publishes no time-to-first-token histogram",
            path=f"models[{plan.index}].autoscaling.metric",
        )
    return f"sum({names.waiting}{match})", "AverageValue"


def _metric_names(plan: ModelPlan) -> MetricNames:
    names = engine_kind(plan.engine).metric_names
    if names is None:  # plan_models gives such a kind fixed replicas: never reached
        raise ConfigError(
            f"engine {plan.engine} publishes no metrics to scale on",
            path=f"models[{plan.index}].autoscaling",
        )
    return names


def scaled_object(plan: ModelPlan, options: RenderOptions, bind: Binder) -> Manifest:
    auto = options.autoscaling
    path = ("models", plan.slug, "autoscaling")
    query, metric_type = keda_query(plan)
    trigger: Manifest = {
        "type": "prometheus",
        "metadata": {
            "serverAddress": bind(auto.prometheus_url, "autoscaling", "prometheusUrl"),
            "query": bind(query, *path, "query"),
            # KEDA's default metric type is AverageValue: a threshold per replica.
            "threshold": _threshold(plan, bind),
        },
    }
    if metric_type != "AverageValue":
        trigger["metricType"] = metric_type
    spec: Manifest = {
        "scaleTargetRef": _target(plan),
        "minReplicaCount": bind(plan.min_replicas, *path, "minReplicas"),
        "maxReplicaCount": bind(plan.max_replicas, *path, "maxReplicas"),
        "pollingInterval": 15,
        "cooldownPeriod": _LEGACY_COOLDOWN_S,
        "triggers": [trigger],
    }
    policy = plan.policy
    if policy is not None:
        idle = policy.scale_to_zero_after_s
        spec["cooldownPeriod"] = round(idle) if idle is not None else _LEGACY_COOLDOWN_S
        up, down = _windows(plan)
        behavior = {
            "scaleUp": {"stabilizationWindowSeconds": up},
            "scaleDown": {"stabilizationWindowSeconds": down},
        }
        spec["advanced"] = {"horizontalPodAutoscalerConfig": {"behavior": behavior}}
    return {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": metadata(plan.slug, options.namespace, bind, COMPONENT, plan.slug),
        "spec": spec,
    }
