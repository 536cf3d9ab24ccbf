"""Ctrl-C in a terminal signals the whole foreground process group, engines included.

`pilothouse up` must still drain: a request in flight when the user presses Ctrl-C completes,
then every engine stops and nothing is left behind.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.e2e.procs import alive, children, kill_quietly, start_until_ready, stop

pytestmark = pytest.mark.e2e

FLEET = """\
apiVersion: pilothouse.dev/v1alpha1
kind: Fleet
models:
  - name: slow
    engine: sim
    replicas: 2
    args: {preset: smollm2-135m-cpu}
gateway:
  port: 0
"""


def test_ctrl_c_drains_in_flight_requests_then_stops_every_engine(tmp_path: Path) -> None:
    spec = tmp_path / "fleet.yaml"
    spec.write_text(FLEET)
    proc, url = start_until_ready(
        ["up", "-f", str(spec), "--log-dir", str(tmp_path / "logs")],
        tmp_path / "up.log",
        new_session=True,
    )
    engines = children(proc.pid)
    try:
        assert len(engines) == 2
        result: dict[str, httpx.Response] = {}

        def long_request() -> None:  # ~1 s of generation on the CPU preset
            body = {"model": "slow", "prompt": "tell me a story", "max_tokens": 64}
            result["r"] = httpx.post(url + "/completions", json=body, timeout=60)

        worker = threading.Thread(target=long_request)
        worker.start()
        time.sleep(0.3)
        os.killpg(proc.pid, signal.SIGINT)  # what a terminal does on Ctrl-C
        worker.join(60)
        assert result["r"].status_code == 200
        assert result["r"].json()["usage"]["completion_tokens"] == 64
        assert proc.wait(30) == 0
        deadline = time.monotonic() + 10
        while any(alive(p) for p in engines) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not [p for p in engines if alive(p)]
    finally:
        stop(proc, signal.SIGKILL, timeout_s=5)
        for pid in engines:
            kill_quietly(pid)
