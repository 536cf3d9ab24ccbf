"""Grafana dashboards for pilothouse's Prometheus metrics, as a ConfigMap Grafana loads.

The dashboards (JSON, shipped in this package under ``dashboards/``): ``pilothouse-gateway``
(traffic, latency, load per replica, scheduling and picker decisions), ``pilothouse-engines``
(vLLM's metric names, which the simulator exports too: running and waiting requests,
KV-cache usage, prefix-cache hit rate) and ``pilothouse-tenants`` (requests, tokens and
spend by team, the ledger's health). Each takes its Prometheus data source as the
``datasource`` variable.

``render k8s --with-dashboards`` emits them as one ConfigMap labelled
``grafana_dashboard: "1"``: the label Grafana's dashboard sidecar (kube-prometheus-stack,
the Grafana Helm chart) watches for, whatever namespace it is told to search.
"""

from __future__ import annotations

from importlib import resources

from pilothouse.controlplane.render.meta import Manifest, metadata
from pilothouse.controlplane.render.options import RenderOptions
from pilothouse.controlplane.render.params import Binder

DASHBOARDS_CONFIGMAP = "pilothouse-grafana-dashboards"
SIDECAR_LABEL = "grafana_dashboard"


def dashboard_files() -> dict[str, str]:
    """File name → dashboard JSON, for every shipped dashboard."""
    folder = resources.files("pilothouse.controlplane.render").joinpath("dashboards")
    return {
        entry.name: entry.read_text(encoding="utf-8")
        for entry in sorted(folder.iterdir(), key=lambda e: e.name)
        if entry.name.endswith(".json")
    }


def dashboards_configmap(options: RenderOptions, bind: Binder) -> Manifest:
    """The dashboards, one data key per file, labelled for Grafana's sidecar."""
    meta = metadata(DASHBOARDS_CONFIGMAP, options.namespace, bind, "dashboards")
    meta["labels"][SIDECAR_LABEL] = "1"
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": dashboard_files()}
