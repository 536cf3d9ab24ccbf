"""Scale to zero with request holding, end to end: `pilothouse up` with a `sim` model at zero.

Twenty concurrent requests reach a model with no replica; the gateway holds them while the
executor starts one (the engine's --startup-delay makes the start take visible time), then
serves every one. With no request for the idle timeout, the model goes back to zero. A
model whose replica cannot start within the hold timeout answers a clear 503.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.procs import alive, children, kill_quietly, start_until_ready, stop

pytestmark = pytest.mark.e2e

STARTUP_S = 1.5
FLEET = f"""
apiVersion: pilothouse.dev/v1alpha1
kind: Fleet
models:
  - name: cold
    engine: sim
    args: {{startup-delay: {STARTUP_S}, time-scale: 10, default-max-tokens: 8}}
    autoscaling:
      min_replicas: 0
      max_replicas: 2
      target: 32
      window_s: 1
      interval_s: 0.25
      scale_down_stabilization_s: 1
      idle_timeout_s: 2
  - name: frozen
    engine: sim
    args: {{startup-delay: 60}}
    autoscaling: {{min_replicas: 0, max_replicas: 1, idle_timeout_s: 30}}
gateway:
  port: 0
  probe_interval_s: 0.1
  access_log: false
  hold: {{max_queue: 32, timeout_s: 5}}
local:
  reconcile_interval_s: 0.1
  stop_grace_s: 2
"""


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[subprocess.Popen[str], str]]:
    tmp = tmp_path_factory.mktemp("zero")
    spec = tmp / "fleet.yaml"
    spec.write_text(FLEET)
    proc, url = start_until_ready(
        ["up", "-f", str(spec), "--log-dir", str(tmp / "logs")], tmp / "up.log", timeout_s=60
    )
    try:
        yield proc, url.removesuffix("/v1")
    finally:
        stop(proc, timeout_s=10)
        for pid in children(proc.pid):
            kill_quietly(pid)


def status(base: str) -> dict[str, Any]:
    document: dict[str, Any] = httpx.get(base + "/admin/fleet", timeout=5).json()
    return document


def replicas_of(base: str, model: str) -> list[dict[str, Any]]:
    return [r for r in status(base)["replicas"] if r["model"] == model]


async def chat(client: httpx.AsyncClient, base: str, model: str, i: int) -> httpx.Response:
    body = {"model": model, "messages": [{"role": "user", "content": f"question {i}"}]}
    return await client.post(base + "/v1/chat/completions", json=body)


def test_a_model_at_zero_serves_twenty_concurrent_requests_then_returns_to_zero(
    fleet: tuple[subprocess.Popen[str], str],
) -> None:
    proc, base = fleet
    assert replicas_of(base, "cold") == []  # min_replicas 0: nothing started
    models = httpx.get(base + "/v1/models", timeout=5).json()["data"]
    assert {m["id"] for m in models} == {"cold", "frozen"}  # listed while at zero

    async def burst() -> tuple[list[httpx.Response], float]:
        started = time.monotonic()
        async with httpx.AsyncClient(timeout=30) as client:
            replies = await asyncio.gather(*(chat(client, base, "cold", i) for i in range(20)))
        return list(replies), time.monotonic() - started

    replies, elapsed = asyncio.run(burst())
    assert [r.status_code for r in replies] == [200] * 20, [r.text for r in replies]
    assert all(r.json()["choices"][0]["message"]["content"] for r in replies)
    assert elapsed >= STARTUP_S  # they waited for the replica to start
    served_by = {r.headers["x-pilothouse-endpoint"] for r in replies}
    assert served_by <= {"cold-0", "cold-1"}
    pids = [r["pid"] for r in replicas_of(base, "cold")]
    assert pids

    deadline = time.monotonic() + 15
    while replicas_of(base, "cold") and time.monotonic() < deadline:
        time.sleep(0.2)
    assert replicas_of(base, "cold") == []  # idle for 2 s: back to zero
    assert status(base)["targets"]["cold"] == 0
    assert not any(alive(pid) for pid in pids)
    assert proc.poll() is None


def test_a_request_held_past_the_hold_timeout_gets_a_clear_503(
    fleet: tuple[subprocess.Popen[str], str],
) -> None:
    _, base = fleet
    started = time.monotonic()
    body = {"model": "frozen", "messages": [{"role": "user", "content": "hello"}]}
    reply = httpx.post(base + "/v1/chat/completions", json=body, timeout=30)
    assert reply.status_code == 503
    error = reply.json()["error"]
    assert error["type"] == "service_unavailable"
    assert "no ready replica" in error["message"]
    assert "5 s" in error["message"]
    assert 4.5 <= time.monotonic() - started < 15
    assert [r["phase"] for r in replicas_of(base, "frozen")] == ["starting"]


def test_unknown_models_are_still_404(fleet: tuple[subprocess.Popen[str], str]) -> None:
    _, base = fleet
    body = {"model": "nope", "messages": [{"role": "user", "content": "hello"}]}
    assert httpx.post(base + "/v1/chat/completions", json=body, timeout=5).status_code == 404


def test_log_of_the_started_replica_exists(tmp_path_factory: pytest.TempPathFactory) -> None:
    logs = list(Path(tmp_path_factory.getbasetemp()).glob("zero*/logs/cold-0.log"))
    assert logs
    assert "starting cold-0" in logs[0].read_text()


def test_the_example_fleet_runs_locally(tmp_path: Path) -> None:
    example = Path(__file__).parents[2] / "examples" / "fleet-sim-autoscale.yaml"
    proc, url = start_until_ready(
        ["up", "-f", str(example), "--port", "0", "--log-dir", str(tmp_path / "logs")],
        tmp_path / "up.log",
        timeout_s=60,
    )
    try:
        body = {"model": "sim-chat", "messages": [{"role": "user", "content": "hi"}],
                "max_tokens": 4}  # fmt: skip
        reply = httpx.post(url + "/chat/completions", json=body, timeout=30)
        assert reply.status_code == 200, reply.text
        assert reply.headers["x-pilothouse-endpoint"] == "sim-chat-0"
    finally:
        stop(proc, timeout_s=10)
        for pid in children(proc.pid):
            kill_quietly(pid)
