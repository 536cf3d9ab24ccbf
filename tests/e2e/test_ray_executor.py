"""The Ray executor end to end: `pilothouse up --executor ray` on a local Ray head.

The module starts its own Ray head (``ray start --head --block``: 2 CPUs, no dashboard, a
small object store, no usage stats, in a temporary directory of its own) and runs a fleet
with one ``sim`` model of two replicas as Ray actors. Requests go through the gateway and
reach both; a replica whose engine is SIGKILLed, and one whose actor's worker process is,
are restarted while requests keep succeeding. Teardown stops `up` and then the head, and
checks that no process either started is left.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import httpx
import pytest

from pilothouse.controlplane.replicas import free_port
from tests.e2e.procs import alive, children, kill_quietly, start_until_ready, stop

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        find_spec("ray") is None, reason="ray is not installed (pip install 'pilothouse[ray]')"
    ),
]

FLEET = """
apiVersion: pilothouse.dev/v1alpha1
kind: Fleet
models:
  - name: chat
    engine: sim
    replicas: 2
    args: {time-scale: 10, default-max-tokens: 4}
gateway:
  port: 0
  scheduler: round-robin
  probe_interval_s: 0.1
  access_log: false
local:
  reconcile_interval_s: 0.1
  restart_backoff_s: 0.5
  restart_backoff_max_s: 2
  stop_grace_s: 2
ray:
  namespace: pilothouse-e2e
  start_timeout_s: 60
"""
# No usage stats; and no token auth, whatever ~/.ray/auth_token holds (Ray enables it for
# `ray start` when that file exists, but not for a driver given an explicit address).
RAY_ENV = {"RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"}


def descendants(pid: int) -> set[int]:
    found: set[int] = set()
    todo = [pid]
    while todo:
        for child in children(todo.pop()):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def wait_for(check: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, f"timed out after {timeout_s:.0f}s waiting for {what}"
        time.sleep(0.1)


@pytest.fixture(scope="module")
def ray_head() -> Iterator[str]:
    """A Ray head on this machine; yields its address, stops it and every process it ran."""
    tmp = Path(tempfile.mkdtemp(prefix="ph-ray-", dir="/tmp"))  # Ray's socket paths are long
    port, client_port = free_port(), free_port()
    log = tmp / "head.log"
    ray = str(Path(sys.executable).parent / "ray")
    args = [ray, "start", "--head", "--block", "--node-ip-address=127.0.0.1", f"--port={port}",
            f"--ray-client-server-port={client_port}", "--num-cpus=2", "--num-gpus=0",
            "--include-dashboard=false", "--object-store-memory=78643200",
            "--disable-usage-stats", f"--temp-dir={tmp / 'ray'}"]  # fmt: skip
    with log.open("w") as out:
        head = subprocess.Popen(
            args,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, **RAY_ENV},
        )
    started = False
    try:

        def up() -> bool:
            assert head.poll() is None, f"ray start exited; log:\n{log.read_text()[-3000:]}"
            return "Ray runtime started" in log.read_text()

        wait_for(up, 120, f"the Ray head; log:\n{log.read_text()[-3000:]}")
        started = True
        yield f"127.0.0.1:{port}"
    finally:
        ran = descendants(head.pid)
        head.send_signal(signal.SIGTERM)  # `ray start --block` stops what it started
        try:
            head.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
            head.wait()
        left = [pid for pid in ran if alive(pid)]
        deadline = time.monotonic() + 15
        while left and time.monotonic() < deadline:
            time.sleep(0.2)
            left = [pid for pid in left if alive(pid)]
        for pid in left:
            kill_quietly(pid)
        shutil.rmtree(tmp, ignore_errors=True)
        assert not (started and left), f"Ray processes left after the head stopped: {left}"


@pytest.fixture(scope="module")
def base(ray_head: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    tmp = tmp_path_factory.mktemp("ray-executor")
    spec = tmp / "fleet.yaml"
    spec.write_text(FLEET)
    args = ["up", "-f", str(spec), "--executor", "ray", "--ray-address", ray_head,
            "--log-dir", str(tmp / "logs")]  # fmt: skip
    with pytest.MonkeyPatch.context() as env:
        for key, value in RAY_ENV.items():
            env.setenv(key, value)
        proc, url = start_until_ready(args, tmp / "up.log", timeout_s=180)
    base = url.removesuffix("/v1")
    engines: set[int] = set()
    try:
        yield base
    finally:
        engines = {r["pid"] for r in replicas(base)}
        stop(proc, timeout_s=30)
        for pid in children(proc.pid):
            kill_quietly(pid)
    wait_for(lambda: not any(alive(pid) for pid in engines), 15, "the engines to stop")


def replicas(base: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = httpx.get(base + "/admin/fleet", timeout=5).json()["replicas"]
    return found


def chat(client: httpx.Client, base: str, n: int) -> int:
    body = {"model": "chat", "messages": [{"role": "user", "content": f"hi {n}"}], "stream": True}
    with client.stream("POST", base + "/v1/chat/completions", json=body) as reply:
        text = "".join(reply.iter_text())
    ok = reply.status_code == 200 and '"error"' not in text and text.rstrip().endswith("[DONE]")
    return 200 if ok else reply.status_code or 599


def served(address: str) -> float:
    """Requests an engine reports as finished (``vllm:request_success_total``)."""
    text = httpx.get(f"http://{address}/metrics", timeout=5).text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("vllm:request_success_total{")
    )


def ray_worker_of(engine_pid: int) -> int:
    stat = Path(f"/proc/{engine_pid}/stat").read_text()
    worker = int(stat.rsplit(")", 1)[1].split()[1])
    title = Path(f"/proc/{worker}/cmdline").read_bytes()
    assert title.startswith(b"ray::EngineHost"), f"engine {engine_pid}'s parent is {title!r}"
    return worker


def restarted(base: str, name: str, old_pid: int) -> Callable[[], bool]:
    def check() -> bool:
        now = {r["name"]: r for r in replicas(base)}
        replica = now.get(name)
        return (
            replica is not None
            and replica["phase"] == "ready"
            and replica["pid"] != old_pid
            and replica["restarts"] == 1
        )

    return check


def test_two_ray_replicas_serve_requests_through_the_gateway(base: str) -> None:
    found = replicas(base)
    assert [(r["name"], r["phase"]) for r in found] == [("chat-0", "ready"), ("chat-1", "ready")]
    with httpx.Client(timeout=30) as client:
        codes = [chat(client, base, n) for n in range(20)]
    assert codes == [200] * 20
    counts = {r["name"]: served(r["address"]) for r in found}
    assert sum(counts.values()) == 20, counts
    assert all(count > 0 for count in counts.values()), counts


def test_a_killed_engine_and_a_killed_actor_are_restarted_while_requests_succeed(
    base: str,
) -> None:
    before = {r["name"]: r["pid"] for r in replicas(base)}
    worker = ray_worker_of(before["chat-1"])
    with httpx.Client(timeout=30) as client:
        os.kill(before["chat-0"], signal.SIGKILL)  # the engine process
        codes = [chat(client, base, n) for n in range(10)]
        wait_for(restarted(base, "chat-0", before["chat-0"]), 60, "chat-0 to be restarted")
        os.kill(worker, signal.SIGKILL)  # the Ray actor's worker process
        codes += [chat(client, base, n) for n in range(10)]
        wait_for(restarted(base, "chat-1", before["chat-1"]), 60, "chat-1 to be restarted")
        codes += [chat(client, base, n) for n in range(10)]
    assert codes == [200] * 30
    wait_for(lambda: not alive(before["chat-1"]), 15, "the dead actor's engine to exit")
