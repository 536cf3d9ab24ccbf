"""Every example fleet that needs no GPU runs under `pilothouse up` as it is: each model, each
LoRA adapter and each traffic split's public name answers a chat request. (The same files
render for Kubernetes: tests/unit/controlplane/render/test_validate.py; the autoscaling
example, which starts at zero replicas, is run by tests/e2e/test_scale_to_zero.py.)"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from pilothouse.config.fleet import load_fleet
from tests.e2e.procs import children, kill_quietly, start_until_ready, stop

pytestmark = pytest.mark.e2e

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
RUNNABLE = [
    "fleet-embedded.yaml",
    "fleet-canary.yaml",
    "fleet-k8s-sim.yaml",
    "fleet-lora-sim.yaml",
]


def served_names(example: Path) -> list[str]:
    spec = load_fleet(example)
    names = [m.name for m in spec.models]
    names += [a.name for m in spec.models for a in m.adapters]
    names += [t.name for t in spec.traffic]
    return names


@pytest.mark.parametrize("name", RUNNABLE)
def test_the_example_runs_locally(name: str, tmp_path: Path) -> None:
    example = EXAMPLES / name
    assert all(m.engine in ("sim", "llamacpp") for m in load_fleet(example).models), "no GPU"
    proc, url = start_until_ready(
        ["up", "-f", str(example), "--port", "0", "--log-dir", str(tmp_path / "logs")],
        tmp_path / "up.log",
        timeout_s=90,
    )
    try:
        with httpx.Client(timeout=60) as client:
            listed = {m["id"] for m in client.get(url + "/models").json()["data"]}
            for model in served_names(example):
                assert model in listed, f"{model} is not in /v1/models: {sorted(listed)}"
                body = {
                    "model": model,
                    "messages": [{"role": "user", "content": "hi"}],
                    "max_tokens": 4,
                }
                reply = client.post(url + "/chat/completions", json=body)
                assert reply.status_code == 200, f"{model}: {reply.status_code} {reply.text}"
                assert reply.json()["usage"]["completion_tokens"] > 0
    finally:
        stop(proc, timeout_s=15)
        for pid in children(proc.pid):
            kill_quietly(pid)
