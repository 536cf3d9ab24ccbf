"""Shutting down `up`: requests outlasting `gateway.drain_timeout_s` end cleanly.

A stream still open when the drain ends gets a final SSE error event and ``[DONE]``; nothing
logs a traceback (the cut is a known condition, not a crash).
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import httpx
import orjson
import pytest

from tests.e2e.procs import children, kill_quietly, start_until_ready, stop

pytestmark = pytest.mark.e2e

FLEET = """\
models:
  - name: slow
    engine: sim
    replicas: 1
    args: {preset: smollm2-135m-cpu, time-scale: 0.05}
gateway:
  port: 0
  drain_timeout_s: 0.5
"""


def test_a_stream_cut_by_the_drain_ends_with_an_sse_error_event(tmp_path: Path) -> None:
    spec = tmp_path / "fleet.yaml"
    spec.write_text(FLEET)
    log = tmp_path / "up.log"
    proc, url = start_until_ready(["up", "-f", str(spec), "--log-dir", str(tmp_path)], log)
    engines = children(proc.pid)
    body = {"model": "slow", "prompt": "a long story", "max_tokens": 2000, "stream": True}
    try:
        events: list[bytes] = []
        with httpx.stream("POST", url + "/completions", json=body, timeout=60) as reply:
            assert reply.status_code == 200
            for line in reply.iter_lines():
                if line.startswith("data: "):
                    events.append(line.removeprefix("data: ").encode())
                    if len(events) == 1:
                        proc.send_signal(signal.SIGTERM)  # shut down mid-stream
        assert events[-1] == b"[DONE]"
        error = orjson.loads(events[-2])["error"]
        assert error["type"] == "service_unavailable"
        assert "shut down" in error["message"]
        assert 1 < len(events) < 2000  # cut, not finished
        assert proc.wait(30) == 0
        text = log.read_text()
        assert "Traceback" not in text, text
        assert "CancelledError" not in text, text
    finally:
        stop(proc)
        for pid in engines:
            kill_quietly(pid)


SIM_FLEET = """\
models:
  - name: m
    engine: sim
    replicas: 2
gateway:
  port: 0
"""


def wait_until_refused(url: str) -> None:
    for _ in range(300):  # a bound on polls, not a time limit
        try:
            httpx.get(url.removesuffix("/v1") + "/health", timeout=5)
        except httpx.TransportError:
            return
        time.sleep(0.01)
    raise AssertionError("the gateway kept accepting after SIGINT")


def test_a_double_ctrl_c_after_a_served_request_stops_quietly(tmp_path: Path) -> None:
    """The second SIGINT (a repeated Ctrl-C, or make passing it on) skips the drain, not
    the gateway's shutdown: nothing outlives the replicas to probe them or to be cancelled."""
    spec = tmp_path / "fleet.yaml"
    spec.write_text(SIM_FLEET)
    log = tmp_path / "up.log"
    args = ["up", "-f", str(spec), "--log-dir", str(tmp_path)]
    proc, url = start_until_ready(args, log, new_session=True)
    engines = children(proc.pid)
    try:
        body = {"model": "m", "prompt": "hi", "max_tokens": 8}
        assert httpx.post(url + "/completions", json=body, timeout=30).status_code == 200
        os.killpg(proc.pid, signal.SIGINT)
        wait_until_refused(url)  # the first is handled: a second is not merged into it
        os.kill(proc.pid, signal.SIGINT)
        assert proc.wait(30) == 0
        text = log.read_text()
        for noise in ("Traceback", "CancelledError", "failed its probe", "is not ready"):
            assert noise not in text, text
        assert "stopped every replica" in text
    finally:
        stop(proc)
        for pid in engines:
            kill_quietly(pid)
