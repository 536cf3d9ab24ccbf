"""`pilothouse up` runs a vLLM fleet: the local executor starts a real vLLM replica (CPU
build, from the venv ``make vllm`` made, named by ``PILOTHOUSE_VLLM_PYTHON``), waits for it
to be healthy and routes to it. The same path runs ``examples/fleet-vllm-gpu.yaml`` on a GPU
machine; here the model is the converted SmolLM2 checkpoint. Skipped like test_vllm_cpu.py
when vLLM is not installed, and failed instead under ``CI=true``."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from pilothouse.engines.launch import VLLM_PYTHON_ENV
from tests.e2e.procs import children, kill_quietly, start_until_ready, stop
from tests.e2e.test_vllm_cpu import READY_TIMEOUT_S, _model_dir, _vllm_python

pytestmark = pytest.mark.e2e

FLEET = """\
apiVersion: pilothouse.dev/v1alpha1
kind: Fleet
models:
  - name: smollm2-vllm
    engine: vllm
    source: {source}
    replicas: 1
    args:
      max-model-len: 2048
      enforce-eager: true
gateway:
  port: 0
  access_log: false
"""


def test_up_starts_a_vllm_replica_and_serves_through_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    python, model = _vllm_python(), _model_dir()
    fleet = tmp_path / "fleet.yaml"
    fleet.write_text(FLEET.format(source=model))
    monkeypatch.setenv(VLLM_PYTHON_ENV, str(python))  # inherited by `up` and its replicas
    monkeypatch.setenv("VLLM_CPU_KVCACHE_SPACE", "1")  # GiB
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("VLLM_NO_USAGE_STATS", "1")
    args = ["up", "-f", str(fleet), "--log-dir", str(tmp_path / "logs")]
    args += ["--ready-timeout", str(int(READY_TIMEOUT_S))]
    proc, url = start_until_ready(args, tmp_path / "up.log", READY_TIMEOUT_S + 30)
    try:
        body = {
            "model": "smollm2-vllm",
            "messages": [{"role": "user", "content": "Say hello."}],
            "max_tokens": 4,
        }
        reply = httpx.post(url + "/chat/completions", json=body, timeout=120)
        assert reply.status_code == 200, reply.text
        assert reply.headers["x-pilothouse-endpoint"] == "smollm2-vllm-0"
        assert reply.json()["usage"]["completion_tokens"] > 0
        engines = httpx.get(url.removesuffix("/v1") + "/metrics", timeout=30).text
        assert 'model="smollm2-vllm"' in engines  # the gateway counted it for that model
    finally:
        stop(proc, timeout_s=60)
        for pid in children(proc.pid):
            kill_quietly(pid)
