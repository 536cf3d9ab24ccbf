"""The local executor end to end: `pilothouse up` supervising `sim` replicas.

One fleet for the module: ``steady`` (two fixed replicas) loses a replica to SIGKILL and
gets it back while requests keep succeeding; ``elastic`` (autoscaled 1..3) scales up under
a load step and back down after it, draining the replicas it stops, without a failed
request; then the fleet file is edited (watched) and a spec is pushed with `apply`.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.procs import children, kill_quietly, start_until_ready, stop

pytestmark = pytest.mark.e2e

FLEET = """
apiVersion: pilothouse.dev/v1alpha1
kind: Fleet
models:
  - name: steady
    engine: sim
    replicas: {steady}
    args: {{time-scale: 10, default-max-tokens: 4}}
  - name: elastic
    engine: sim
    args: {{default-max-tokens: 48}}
    autoscaling:
      min_replicas: 1
      max_replicas: 3
      target: 2
      window_s: 0.5
      interval_s: 0.2
      scale_down_stabilization_s: 1.5
gateway:
  port: 0
  probe_interval_s: 0.1
  access_log: false
local:
  reconcile_interval_s: 0.1
  restart_backoff_s: 0.5
  restart_backoff_max_s: 2
  drain_timeout_s: 20
  stop_grace_s: 2
  watch_interval_s: 0.2
  watch_debounce_s: 0.1
"""


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str]]:
    tmp = tmp_path_factory.mktemp("executor")
    spec = tmp / "fleet.yaml"
    spec.write_text(FLEET.format(steady=2))
    proc, url = start_until_ready(
        ["up", "-f", str(spec), "--log-dir", str(tmp / "logs")], tmp / "up.log", timeout_s=60
    )
    try:
        yield spec, url.removesuffix("/v1")
    finally:
        stop(proc, timeout_s=10)
        for pid in children(proc.pid):
            kill_quietly(pid)


def replicas(base: str, model: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = httpx.get(base + "/admin/fleet", timeout=5).json()["replicas"]
    return [r for r in found if r["model"] == model]


def wait_for(check: Callable[[], bool], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def chat(client: httpx.Client, base: str, model: str) -> int:
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}], "stream": True}
    with client.stream("POST", base + "/v1/chat/completions", json=body) as reply:
        text = "".join(reply.iter_text())
    ok = reply.status_code == 200 and '"error"' not in text and text.rstrip().endswith("[DONE]")
    return 200 if ok else reply.status_code or 599


def test_a_crashed_replica_is_restarted_and_requests_keep_succeeding(
    fleet: tuple[Path, str],
) -> None:
    _, base = fleet
    before = {r["name"]: r for r in replicas(base, "steady")}
    assert [r["phase"] for r in before.values()] == ["ready", "ready"]
    os.kill(before["steady-0"]["pid"], signal.SIGKILL)
    with httpx.Client(timeout=10) as client:
        codes = [chat(client, base, "steady") for _ in range(20)]
    assert codes == [200] * 20

    def restarted() -> bool:
        now = {r["name"]: r for r in replicas(base, "steady")}
        zero = now.get("steady-0")
        return zero is not None and zero["phase"] == "ready" and zero["restarts"] == 1

    wait_for(restarted, 15)
    after = {r["name"]: r["pid"] for r in replicas(base, "steady")}
    assert after["steady-0"] != before["steady-0"]["pid"]
    assert after["steady-1"] == before["steady-1"]["pid"]


class Load:
    """``workers`` threads sending streamed requests back to back until told to stop."""

    def __init__(self, base: str, workers: int) -> None:
        self.codes: list[int] = []
        self._stop = threading.Event()
        self._pool = ThreadPoolExecutor(workers)
        self._futures = [self._pool.submit(self._work, base) for _ in range(workers)]

    def _work(self, base: str) -> None:
        with httpx.Client(timeout=30) as client:
            while not self._stop.is_set():
                self.codes.append(chat(client, base, "elastic"))

    def finish(self) -> list[int]:
        self._stop.set()
        for future in self._futures:
            future.result()
        self._pool.shutdown()
        return self.codes


def test_scales_up_under_a_load_step_and_down_after_it_without_failing_a_request(
    fleet: tuple[Path, str],
) -> None:
    _, base = fleet
    assert len(replicas(base, "elastic")) == 1
    phases: set[str] = set()

    def watch(count: int) -> Callable[[], bool]:
        def check() -> bool:
            now = replicas(base, "elastic")
            phases.update(r["phase"] for r in now)
            return sum(r["phase"] == "ready" for r in now) == count and len(now) == count

        return check

    heavy = Load(base, 8)
    try:
        wait_for(watch(3), 20)  # 8 outstanding / 2 per replica: as many as allowed
    finally:
        codes = heavy.finish()
    light = Load(base, 3)  # still busy everywhere while it shrinks: the stopped one drains
    try:
        wait_for(watch(2), 20)
    finally:
        codes += light.finish()
    wait_for(watch(1), 20)
    assert codes
    assert set(codes) == {200}
    assert "draining" in phases


def test_an_edited_fleet_file_is_applied(fleet: tuple[Path, str]) -> None:
    spec, base = fleet
    spec.write_text(FLEET.format(steady=3))
    wait_for(lambda: [r["phase"] for r in replicas(base, "steady")] == ["ready"] * 3, 20)
    spec.write_text(FLEET.format(steady="-1"))  # invalid: logged, not applied
    time.sleep(1.0)
    assert len(replicas(base, "steady")) == 3


def test_apply_pushes_a_spec_and_refuses_an_invalid_one(
    fleet: tuple[Path, str], tmp_path: Path
) -> None:
    _, base = fleet
    bad = tmp_path / "bad.yaml"
    bad.write_text(FLEET.format(steady=2).replace("target: 2", "target: -2"))
    result = _apply(bad, base)
    assert result.returncode == 1
    assert f"{bad}: models[1].autoscaling.target:" in result.stderr
    good = tmp_path / "good.yaml"
    good.write_text(FLEET.format(steady=1))
    result = _apply(good, base)
    assert result.returncode == 0, result.stderr
    assert "drain and stop steady-" in result.stdout
    wait_for(lambda: len(replicas(base, "steady")) == 1, 20)


def _apply(path: Path, base: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pilothouse", "apply", "-f", str(path), "--url", base],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
