"""The Grafana dashboards: valid dashboards over metrics pilothouse exports, and the
ConfigMap ``render k8s --with-dashboards`` emits for Grafana's sidecar."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml
from click.testing import CliRunner

import pilothouse
from pilothouse.controlplane.render.cli import render_group
from pilothouse.controlplane.render.dashboards import dashboard_files
from pilothouse.endpoints.pool import EndpointPool
from pilothouse.epp.metrics import EppMetrics
from pilothouse.gateway.metrics import GatewayMetrics
from pilothouse.governance.metrics import GovernanceMetrics
from tests.unit.controlplane.render.conftest import SIM_EXAMPLE

_SERIES = re.compile(r"\b(pilothouse_[a-z0-9_]+|vllm:[a-z0-9_]+)")
_SUFFIX = re.compile(r"_(total|bucket|sum|count)$")
SRC = Path(pilothouse.__file__).parent


def _exported() -> set[str]:
    """Metric names the gateway, the picker and governance register, and the names the
    simulator and the ledger collector expose (read from their sources)."""
    names: set[str] = set()
    for registry in (
        GatewayMetrics().registry,
        GovernanceMetrics().registry,
        EppMetrics(EndpointPool()).registry,
    ):
        names |= {family.name for family in registry.collect()}
    for source in ("servers/sim/metrics.py", "governance/metrics.py", "gateway/lag_probe.py"):
        names |= set(re.findall(r'"((?:pilothouse_|vllm:)[a-z0-9_]+)"', (SRC / source).read_text()))
    return names


def test_every_dashboard_is_a_grafana_dashboard_over_exported_metrics() -> None:
    files = dashboard_files()
    assert set(files) == {
        "pilothouse-gateway.json",
        "pilothouse-engines.json",
        "pilothouse-tenants.json",
    }
    exported = _exported()
    uids = set()
    for name, text in files.items():
        board = json.loads(text)
        uids.add(board["uid"])
        assert board["templating"]["list"][0]["type"] == "datasource"
        ids = [panel["id"] for panel in board["panels"]]
        assert len(ids) == len(set(ids)), name
        for panel in board["panels"]:
            assert panel["datasource"]["uid"] == "${datasource}"
            assert panel["targets"], panel["title"]
            for target in panel["targets"]:
                series = {_SUFFIX.sub("", s) for s in _SERIES.findall(target["expr"])}
                assert series, target["expr"]
                assert series <= exported, f"{name} / {panel['title']}: {series - exported}"
    assert len(uids) == len(files)


def test_render_k8s_with_dashboards_emits_the_labelled_configmap() -> None:
    result = CliRunner().invoke(render_group, ["k8s", "-f", str(SIM_EXAMPLE), "--with-dashboards"])
    assert result.exit_code == 0, result.output
    maps = [d for d in yaml.safe_load_all(result.stdout) if d["kind"] == "ConfigMap"]
    (board,) = [m for m in maps if m["metadata"]["labels"].get("grafana_dashboard") == "1"]
    assert set(board["data"]) == set(dashboard_files())
    assert json.loads(board["data"]["pilothouse-gateway.json"])["uid"] == "pilothouse-gateway"

    plain = CliRunner().invoke(render_group, ["k8s", "-f", str(SIM_EXAMPLE)])
    assert "grafana_dashboard" not in plain.stdout


def test_render_k8s_out_writes_the_dashboards_to_their_own_file(tmp_path: Path) -> None:
    out = tmp_path / "out"
    args = ["k8s", "-f", str(SIM_EXAMPLE), "--with-dashboards", "--out", str(out)]
    result = CliRunner().invoke(render_group, args)
    assert result.exit_code == 0, result.output
    assert (out / "dashboards.yaml").exists()


def test_render_helm_refuses_dashboards_whose_legends_helm_would_parse(tmp_path: Path) -> None:
    args = ["helm", "-f", str(SIM_EXAMPLE), "--with-dashboards", "--out", str(tmp_path / "c")]
    result = CliRunner().invoke(render_group, args)
    assert result.exit_code != 0
    assert "render k8s" in result.output
    assert "Traceback" not in result.output
