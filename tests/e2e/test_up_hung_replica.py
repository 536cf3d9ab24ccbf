"""A hung replica (alive, not answering: SIGSTOPped) is detected and restarted by `up`."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import httpx
import pytest

from tests.e2e.procs import children, kill_quietly, start_until_ready, stop

pytestmark = pytest.mark.e2e

FLEET = """\
models:
  - name: m
    engine: sim
    replicas: 1
gateway:
  port: 0
local:
  probe_timeout_s: 0.5
  liveness_interval_s: 0.2
  liveness_failures: 2
  restart_backoff_s: 0.1
  stop_grace_s: 2
"""


def replica(admin: str) -> dict[str, object]:
    replicas = httpx.get(admin, timeout=10).json()["replicas"]
    assert len(replicas) == 1
    return dict(replicas[0])


def test_a_sigstopped_replica_is_restarted(tmp_path: Path) -> None:
    spec = tmp_path / "fleet.yaml"
    spec.write_text(FLEET)
    log = tmp_path / "up.log"
    proc, url = start_until_ready(["up", "-f", str(spec), "--log-dir", str(tmp_path)], log)
    admin = url.removesuffix("/v1") + "/admin/fleet"
    hung = children(proc.pid)
    try:
        before = replica(admin)
        assert before["phase"] == "ready"
        assert [before["pid"]] == hung
        os.kill(hung[0], signal.SIGSTOP)
        now = before
        for _ in range(600):  # a bound on polls, not a time limit on the restart
            now = replica(admin)
            if now["pid"] != before["pid"] and now["phase"] == "ready":
                break
            time.sleep(0.1)
        assert now["pid"] != before["pid"], now
        assert now["phase"] == "ready", now
        assert now["restarts"] == 1
        reply = httpx.post(url + "/completions", json={"model": "m", "prompt": "hi"}, timeout=30)
        assert reply.status_code == 200
        assert "replica m-0 failed 2 health probes in a row" in log.read_text()
    finally:
        stop(proc)
        for pid in hung:
            kill_quietly(pid)
