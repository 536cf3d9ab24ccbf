"""`pilothouse up` fails loudly and early: one clear error, no replica started, no traceback."""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

SIM_FLEET = """\
models:
  - name: m
    engine: sim
    replicas: 2
gateway:
  port: {port}
"""
NOISE = ("Traceback", "Task exception was never retrieved", "gateway drained", "ready on")


def run_up(tmp_path: Path, fleet: str, env: dict[str, str] | None = None) -> str:
    """Run `pilothouse up` to its end (it must fail on its own); its output."""
    spec = tmp_path / "fleet.yaml"
    spec.write_text(fleet)
    args = ["up", "-f", str(spec), "--log-dir", str(tmp_path / "logs")]
    done = subprocess.run(
        [sys.executable, "-m", "pilothouse", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 1, output
    assert "pilothouse is ready" not in output
    for noise in NOISE:
        assert noise not in output
    assert not list((tmp_path / "logs").glob("*.log")), "a replica was started"
    return output


def test_a_port_in_use_fails_before_any_replica_starts(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        output = run_up(tmp_path, SIM_FLEET.format(port=port))
    assert f"gateway.port: cannot listen on 127.0.0.1:{port}" in output


VLLM_FLEET = """\
models:
  - name: fixed
    engine: sim
    replicas: 1
  - name: big
    engine: vllm
    source: hf://Qwen/Qwen2.5-0.5B-Instruct
    autoscaling: {{min_replicas: {low}, max_replicas: 2}}
gateway:
  port: 0
"""


@pytest.mark.parametrize("low", [0, 1])  # at zero it used to print "ready", then loop
@pytest.mark.parametrize(
    ("python", "why"),
    [
        ("/nonexistent/python3", "is not an executable Python"),
        (sys.executable, "cannot import vllm"),  # the test environment has no vLLM
    ],
)
def test_a_missing_vllm_fails_before_anything_starts(
    tmp_path: Path, python: str, why: str, low: int
) -> None:
    if python == sys.executable and importlib.util.find_spec("vllm") is not None:
        pytest.skip("this environment has vLLM")
    env = {**os.environ, "PILOTHOUSE_VLLM_PYTHON": python}
    output = run_up(tmp_path, VLLM_FLEET.format(low=low), env)
    assert f"models[1].engine: vllm: PILOTHOUSE_VLLM_PYTHON={python} {why}" in output
