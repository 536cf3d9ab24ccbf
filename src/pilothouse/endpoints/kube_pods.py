"""Pure mapping from Kubernetes Pods and an InferencePool to pilothouse endpoints.

Kept apart from the watch machinery in :mod:`pilothouse.endpoints.kubernetes` so it can be
read and tested on plain JSON objects.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Any

from pilothouse.engines.registry import is_known
from pilothouse.scheduling.types import Endpoint

ENGINE_LABEL = "llm-d.ai/engine-type"
DEFAULT_ENGINE = "vllm"
#: What a pod labelled with an engine pilothouse has no adapter for is taken as: an
#: OpenAI-compatible server probed on /v1/models, without metrics.
UNKNOWN_ENGINE = "openai"
ACTIVE_PORTS_ANNOTATIONS = ("llm-d.ai/active-ports", "inference.networking.k8s.io/active-ports")

Obj = Mapping[str, Any]  # one Kubernetes object as decoded from the wire


def pod_is_ready(pod: Obj) -> bool:
    """Ready condition true and no deletionTimestamp (GAIE's ``IsPodReady``)."""
    if pod.get("metadata", {}).get("deletionTimestamp"):
        return False
    for condition in pod.get("status", {}).get("conditions") or ():
        if condition.get("type") == "Ready":
            return bool(condition.get("status") == "True")
    return False


def selector_matches(match_labels: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    """``matchLabels`` semantics; an empty selector matches nothing (the CRD requires one)."""
    return bool(match_labels) and all(labels.get(k) == v for k, v in match_labels.items())


def active_ports(pod: Obj, target_ports: Iterable[int]) -> set[int]:
    """The target ports this pod serves: all of them unless an active-ports annotation says."""
    ports = set(target_ports)
    annotations = pod.get("metadata", {}).get("annotations") or {}
    for key in ACTIVE_PORTS_ANNOTATIONS:
        if key in annotations:
            listed = {p.strip() for p in str(annotations[key]).split(",")}
            return {p for p in ports if str(p) in listed}
    return ports


def pod_endpoints(pool_name: str, target_ports: list[int], pod: Obj) -> list[Endpoint]:
    """One endpoint per active target port of a Ready pod with an IP; none otherwise."""
    metadata = pod.get("metadata", {})
    ip = pod.get("status", {}).get("podIP")
    if not ip or not pod_is_ready(pod):
        return []
    labels: dict[str, str] = dict(metadata.get("labels") or {})
    engine = labels.get(ENGINE_LABEL, DEFAULT_ENGINE)
    if not is_known(engine):  # the prober would fail on it, and the picker never get ready
        engine = UNKNOWN_ENGINE
    host = f"[{ip}]" if ":" in ip else ip
    active = active_ports(pod, target_ports)
    return [
        Endpoint(
            name=f"{metadata['name']}-rank-{rank}",
            address=f"{host}:{port}",
            model=pool_name,
            engine=engine,
            labels=MappingProxyType(labels),
        )
        for rank, port in enumerate(target_ports)
        if port in active
    ]


def pool_endpoints(pool: Obj | None, pods: Iterable[Obj]) -> tuple[Endpoint, ...]:
    """The whole endpoint set of ``pool`` (``None``: the pool does not exist → empty)."""
    if pool is None:
        return ()
    spec = pool.get("spec", {})
    match_labels: Mapping[str, str] = (spec.get("selector") or {}).get("matchLabels") or {}
    target_ports = [int(p["number"]) for p in spec.get("targetPorts") or ()]
    name = str(pool["metadata"]["name"])
    selected = [
        p for p in pods if selector_matches(match_labels, p.get("metadata", {}).get("labels") or {})
    ]
    selected.sort(key=lambda p: str(p["metadata"]["name"]))
    return tuple(e for pod in selected for e in pod_endpoints(name, target_ports, pod))


# --------------------------------------------------------------------------- list and watch
