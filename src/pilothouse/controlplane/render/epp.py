"""The endpoint picker of one pool: ServiceAccount, Role + RoleBinding, Deployment, Service.

The picker is ``pilothouse epp`` (ext_proc gRPC on 9002, gRPC health on 9003 with the
``liveness`` and ``readiness`` services, Prometheus on 9090, as in the Gateway API Inference
Extension); it watches its InferencePool and the pods of its namespace, hence the Role.

ext_proc is served with TLS (a self-signed certificate made at start) unless the render is
told ``--epp-plaintext``. The gateway must then connect with TLS: kgateway and agentgateway
always do (without verifying the certificate); Istio does when a DestinationRule says so,
which is rendered for ``gateway_class: istio`` as GAIE's chart does, but for the ext_proc
port only (metrics on 9090 stay plaintext HTTP for Prometheus). Health stays plaintext:
kubelet's gRPC probes cannot speak TLS.
"""

from __future__ import annotations

from pilothouse.controlplane.render.meta import EPP_LABEL, Manifest, labels, metadata
from pilothouse.controlplane.render.options import ModelPlan, RenderOptions
from pilothouse.controlplane.render.params import Binder

COMPONENT = "endpoint-picker"
GRPC_PORT = 9002
HEALTH_PORT = 9003
METRICS_PORT = 9090
SCHEDULER_MOUNT = "/etc/pilothouse"
SCHEDULER_CONFIGMAP = "pilothouse-scheduler"
SCHEDULER_KEY = "scheduler.yaml"
ISTIO = "istio"


def epp_name(plan: ModelPlan) -> str:
    return f"{plan.slug}-epp"


def epp_objects(
    plan: ModelPlan, options: RenderOptions, bind: Binder, *, scheduler_file: bool, scheduler: str
) -> list[Manifest]:
    """Every object of the picker, in apply order."""
    name = epp_name(plan)
    meta = metadata(name, options.namespace, bind, COMPONENT, plan.slug)
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta},
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": meta,
            "rules": [
                {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]},
                {
                    "apiGroups": ["inference.networking.k8s.io"],
                    "resources": ["inferencepools"],
                    "verbs": ["get", "list", "watch"],
                },
            ],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": meta,
            "subjects": [
                {
                    "kind": "ServiceAccount",
                    "name": name,
                    "namespace": bind.namespace(options.namespace),
                }
            ],
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
        },
        _service(plan, meta),
        *_destination_rule(plan, options, meta),
        _deployment(plan, options, bind, meta, scheduler_file, scheduler),
    ]


def _destination_rule(plan: ModelPlan, options: RenderOptions, meta: Manifest) -> list[Manifest]:
    """Istio connects to the picker's ext_proc port with TLS, trusting its self-signed cert."""
    if not (options.epp_tls and options.gateway_class == ISTIO):
        return []
    tls = {"mode": "SIMPLE", "insecureSkipVerify": True}
    return [
        {
            "apiVersion": "networking.istio.io/v1",
            "kind": "DestinationRule",
            "metadata": meta,
            "spec": {
                "host": epp_name(plan),  # a short name: the Service in the rule's namespace
                "trafficPolicy": {
                    "portLevelSettings": [{"port": {"number": GRPC_PORT}, "tls": tls}]
                },
            },
        }
    ]


def _service(plan: ModelPlan, meta: Manifest) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": meta,
        "spec": {
            "type": "ClusterIP",
            "selector": {EPP_LABEL: plan.slug},
            "ports": [
                {
                    "name": "grpc-ext-proc",
                    "port": GRPC_PORT,
                    "targetPort": GRPC_PORT,
                    "protocol": "TCP",
                    "appProtocol": "http2",
                },
                {
                    "name": "http-metrics",
                    "port": METRICS_PORT,
                    "targetPort": METRICS_PORT,
                    "protocol": "TCP",
                },
            ],
        },
    }


def _deployment(
    plan: ModelPlan,
    options: RenderOptions,
    bind: Binder,
    meta: Manifest,
    scheduler_file: bool,
    scheduler: str,
) -> Manifest:
    container: Manifest = {
        "name": "epp",
        "image": bind(options.images.pilothouse, "images", "pilothouse"),
        "imagePullPolicy": bind(options.images.pull_policy, "images", "pullPolicy"),
        "command": ["python", "-m", "pilothouse", "epp"],
        "args": _args(plan, options, bind, scheduler_file, scheduler),
        "ports": [
            {"name": "grpc", "containerPort": GRPC_PORT, "protocol": "TCP"},
            {"name": "grpc-health", "containerPort": HEALTH_PORT, "protocol": "TCP"},
            {"name": "metrics", "containerPort": METRICS_PORT, "protocol": "TCP"},
        ],
        "livenessProbe": _grpc_probe("liveness"),
        "readinessProbe": _grpc_probe("readiness"),
        "resources": {"requests": {"cpu": "500m", "memory": "512Mi"}, "limits": {"memory": "2Gi"}},
    }
    pod_spec: Manifest = {
        "serviceAccountName": epp_name(plan),
        "terminationGracePeriodSeconds": 130,
        "containers": [container],
    }
    if scheduler_file:
        container["volumeMounts"] = [{"name": "scheduler", "mountPath": SCHEDULER_MOUNT}]
        pod_spec["volumes"] = [{"name": "scheduler", "configMap": {"name": SCHEDULER_CONFIGMAP}}]
    pod_labels = {**labels(COMPONENT, plan.slug), EPP_LABEL: plan.slug}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": meta,
        "spec": {
            "replicas": bind(options.epp_replicas, "epp", "replicas"),
            "selector": {"matchLabels": {EPP_LABEL: plan.slug}},
            "template": {"metadata": {"labels": pod_labels}, "spec": pod_spec},
        },
    }


def _args(
    plan: ModelPlan, options: RenderOptions, bind: Binder, scheduler_file: bool, scheduler: str
) -> list[str]:
    return [
        "--pool-name",
        plan.slug,
        "--pool-namespace",
        bind.namespace(options.namespace),
        "--scheduler",
        f"{SCHEDULER_MOUNT}/{SCHEDULER_KEY}" if scheduler_file else scheduler,
        "--host",
        "0.0.0.0",
        "--port",
        str(GRPC_PORT),
        "--health-port",
        str(HEALTH_PORT),
        "--metrics-port",
        str(METRICS_PORT),
        f"--secure-serving={'true' if options.epp_tls else 'false'}",
    ]


def _grpc_probe(service: str) -> Manifest:
    return {
        "grpc": {"port": HEALTH_PORT, "service": service},
        "initialDelaySeconds": 5,
        "periodSeconds": 10,
    }


def scheduler_configmap(text: str, options: RenderOptions, bind: Binder) -> Manifest:
    """The scheduler YAML a Fleet names by path, shipped to every picker."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": metadata(SCHEDULER_CONFIGMAP, options.namespace, bind, COMPONENT),
        "data": {SCHEDULER_KEY: text},
    }
