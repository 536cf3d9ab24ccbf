"""`pilothouse render k8s | helm` from the command line."""

from __future__ import annotations

from pathlib import Path

import yaml
from click.testing import CliRunner

from pilothouse.controlplane.render.cli import render_group
from tests.unit.controlplane.render.conftest import SIM_EXAMPLE, VLLM_EXAMPLE


def test_k8s_to_stdout_with_options() -> None:
    result = CliRunner().invoke(
        render_group,
        ["k8s", "-f", str(VLLM_EXAMPLE), "-n", "llm", "--gateway", "edge", "--with-gateway",
         "--gateway-class", "istio", "--autoscaling", "keda", "--vllm-image", "my/vllm:1"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    docs = list(yaml.safe_load_all(result.stdout))
    kinds = [d["kind"] for d in docs]
    assert kinds[0] == "Gateway"
    assert "ScaledObject" in kinds
    assert {d["metadata"]["namespace"] for d in docs} == {"llm"}
    gateway = docs[0]
    assert (gateway["metadata"]["name"], gateway["spec"]["gatewayClassName"]) == ("edge", "istio")
    images = {c["image"] for d in docs if d["kind"] == "Deployment"
              for c in d["spec"]["template"]["spec"]["containers"]}  # fmt: skip
    assert images == {"my/vllm:1", "ghcr.io/pilothouse/pilothouse:0.1.0"}


def test_k8s_out_writes_one_file_per_model(tmp_path: Path) -> None:
    fleet = tmp_path / "fleet.yaml"
    fleet.write_text("models:\n  - {name: a, engine: sim}\n  - {name: b.c, engine: sim}\n")
    out = tmp_path / "out"
    result = CliRunner().invoke(
        render_group, ["k8s", "-f", str(fleet), "--with-gateway", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    names = sorted(p.name for p in out.iterdir())
    assert names == ["a.yaml", "b-c.yaml", "gateway.yaml"]
    model = list(yaml.safe_load_all((out / "b-c.yaml").read_text()))
    assert {d["metadata"]["labels"]["pilothouse.dev/model"] for d in model} == {"b-c"}


def test_k8s_notes_models_it_cannot_render(tmp_path: Path) -> None:
    fleet = tmp_path / "fleet.yaml"
    fleet.write_text("models:\n  - {name: other, engine: sglang}\n  - {name: sim, engine: sim}\n")
    result = CliRunner().invoke(render_group, ["k8s", "-f", str(fleet)])
    assert result.exit_code == 0, result.output
    assert "not rendered" in result.stderr
    assert "other" in result.stderr


def test_errors_carry_the_field_path(tmp_path: Path) -> None:
    fleet = tmp_path / "fleet.yaml"
    fleet.write_text("models:\n  - {name: m, engine: vllm, source: x, args: {port: 1}}\n")
    result = CliRunner().invoke(render_group, ["k8s", "-f", str(fleet)])
    assert result.exit_code == 1
    assert "models[0].args.port" in result.output


def test_helm_records_how_the_chart_was_generated(tmp_path: Path) -> None:
    out = tmp_path / "chart"
    result = CliRunner().invoke(
        render_group,
        ["helm", "-f", str(SIM_EXAMPLE), "--out", str(out), "--autoscaling", "none",
         "--with-gateway"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert (out / "Chart.yaml").is_file()
    header = (out / "values.yaml").read_text().splitlines()[0]
    assert "--autoscaling none" in header
    assert "--with-gateway" in header
    values = yaml.safe_load((out / "values.yaml").read_text())
    assert values["models"]["llama-3-1-8b-instruct"]["replicas"] == 3
