"""Builders for Kubernetes objects in the JSON shape the API server sends.

Used with :class:`~pilothouse.testing.fake_kube.FakeKubeAPI` to test discovery without a
cluster: a ``v1`` Pod as the kubelet reports it (conditions, ``podIP``/``podIPs``, container
ports) and an ``inference.networking.k8s.io/v1`` InferencePool.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

Obj = dict[str, Any]

_TIME = "2026-01-01T00:00:00Z"


def pod(
    name: str,
    *,
    ip: str | None,
    labels: Mapping[str, str],
    namespace: str = "default",
    ready: bool = True,
    terminating: bool = False,
    ports: Sequence[int] = (8000,),
    annotations: Mapping[str, str] | None = None,
) -> Obj:
    """A Running (or Pending, without ``ip``) pod with one container serving ``ports``."""
    status = "True" if ready else "False"
    metadata: Obj = {
        "name": name,
        "namespace": namespace,
        "uid": f"uid-{namespace}-{name}",
        "labels": dict(labels),
        "creationTimestamp": _TIME,
    }
    if annotations:
        metadata["annotations"] = dict(annotations)
    if terminating:
        metadata["deletionTimestamp"] = _TIME
        metadata["deletionGracePeriodSeconds"] = 30
    pod_status: Obj = {
        "phase": "Running" if ip else "Pending",
        "conditions": [
            {"type": "PodScheduled", "status": "True", "lastTransitionTime": _TIME},
            {"type": "Initialized", "status": "True", "lastTransitionTime": _TIME},
            {"type": "ContainersReady", "status": status, "lastTransitionTime": _TIME},
            {"type": "Ready", "status": status, "lastTransitionTime": _TIME},
        ],
        "hostIP": "10.0.0.1",
        "startTime": _TIME,
    }
    if ip:
        pod_status["podIP"] = ip
        pod_status["podIPs"] = [{"ip": ip}]
    return {
        "kind": "Pod",
        "apiVersion": "v1",
        "metadata": metadata,
        "spec": {
            "containers": [
                {
                    "name": "server",
                    "image": "vllm/vllm-openai:latest",
                    "ports": [{"containerPort": p, "protocol": "TCP"} for p in ports],
                }
            ],
            "restartPolicy": "Always",
            "nodeName": "node-1",
        },
        "status": pod_status,
    }


def inference_pool(
    name: str,
    *,
    match_labels: Mapping[str, str],
    target_ports: Sequence[int] = (8000,),
    namespace: str = "default",
    epp_service: str | None = None,
    epp_port: int = 9002,
) -> Obj:
    """An ``inference.networking.k8s.io/v1`` InferencePool."""
    return {
        "kind": "InferencePool",
        "apiVersion": "inference.networking.k8s.io/v1",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "uid": f"uid-{namespace}-pool-{name}",
            "generation": 1,
            "creationTimestamp": _TIME,
        },
        "spec": {
            "selector": {"matchLabels": dict(match_labels)},
            "targetPorts": [{"number": p} for p in target_ports],
            "endpointPickerRef": {
                "name": epp_service or f"{name}-epp",
                "kind": "Service",
                "port": {"number": epp_port},
                "failureMode": "FailClose",
            },
        },
    }
