"""The committed chart, checked by the real ``helm`` binary (``make helm`` fetches it; ``make
test`` passes its path as ``PILOTHOUSE_HELM``): ``helm lint --strict`` passes and ``helm
template`` renders the same objects as ``render k8s``, with the TLS wiring of the picker."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.unit.controlplane.render.schemas import require_schemas, validate
from tests.unit.controlplane.render.test_helm import (
    CHART,
    OVERRIDDEN,
    OVERRIDES,
    by_identity,
    expected,
)

REPO = Path(__file__).resolve().parents[4]
Manifest = dict[str, Any]


@pytest.fixture(scope="module")
def helm() -> str:
    found = os.environ.get("PILOTHOUSE_HELM") or shutil.which("helm")
    local = REPO / ".cache" / "bin" / "helm"
    if found is None and local.is_file():
        found = str(local)
    if found is None:
        pytest.skip("no helm binary: run `make helm` (make test does) or set PILOTHOUSE_HELM")
    return found


def _run(helm: str, *args: str) -> str:
    done = subprocess.run([helm, *args], capture_output=True, text=True, check=False)
    assert done.returncode == 0, f"helm {' '.join(args)} failed:\n{done.stdout}{done.stderr}"
    return done.stdout


def _template(helm: str, tmp: Path, values: dict[str, Any], namespace: str) -> list[Manifest]:
    (tmp / "values.yaml").write_text(yaml.safe_dump(values))
    text = _run(
        helm, "template", "fleet", str(CHART), "-n", namespace, "-f", str(tmp / "values.yaml")
    )
    return [doc for doc in yaml.safe_load_all(text) if doc]


def test_helm_lint_strict_passes(helm: str) -> None:
    assert "0 chart(s) failed" in _run(helm, "lint", "--strict", str(CHART))


def test_helm_lint_can_fail(helm: str, tmp_path: Path) -> None:
    broken = tmp_path / "chart"
    shutil.copytree(CHART, broken)
    (broken / "Chart.yaml").write_text("name: x\n")  # no apiVersion, no version
    done = subprocess.run([helm, "lint", "--strict", str(broken)], capture_output=True, check=False)
    assert done.returncode != 0


def test_helm_template_defaults_match_render_k8s(helm: str, tmp_path: Path) -> None:
    got = _template(helm, tmp_path, {}, "default")
    assert by_identity(got) == expected(type(OVERRIDDEN)())


def test_helm_template_with_values_matches_and_validates(helm: str, tmp_path: Path) -> None:
    require_schemas()
    got = _template(helm, tmp_path, OVERRIDES, "prod")
    assert by_identity(got) == expected(OVERRIDDEN)
    for manifest in got:
        validate(manifest)
    kinds = {m["kind"] for m in got}
    assert "DestinationRule" in kinds  # the chart's gateway (Istio) connects with TLS
