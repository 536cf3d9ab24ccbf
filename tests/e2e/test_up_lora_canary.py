"""`pilothouse up` end to end: declared adapters reach the sim replicas, a split is served,
and `pilothouse apply` shifts its weights."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from pilothouse.cli import cli
from tests.e2e.procs import children, kill_quietly, start_until_ready, stop

pytestmark = pytest.mark.e2e

FLEET = """
apiVersion: pilothouse.dev/v1alpha1
kind: Fleet
models:
  - name: chat-v1
    engine: sim
    replicas: 1
    args: {{time-scale: 20, default-max-tokens: 2}}
    adapters:
      - name: sql
        source: /adapters/sql
  - name: chat-v2
    engine: sim
    replicas: 1
    args: {{time-scale: 20, default-max-tokens: 2}}
traffic:
  - name: chat
    versions:
      - {{model: chat-v1, weight: {v1}}}
      - {{model: chat-v2, weight: {v2}}}
gateway:
  port: 0
  probe_interval_s: 0.1
  access_log: false
"""


def test_adapters_and_split_under_up(tmp_path: Path) -> None:
    spec = tmp_path / "fleet.yaml"
    spec.write_text(FLEET.format(v1=1, v2=1))
    proc, url = start_until_ready(
        ["up", "-f", str(spec), "--log-dir", str(tmp_path / "logs")], tmp_path / "up.log", 60
    )
    try:
        base = url.removesuffix("/v1")
        with httpx.Client(base_url=base, timeout=10) as client:
            models = {m["id"]: m for m in client.get("/v1/models").json()["data"]}
            assert models["sql"]["parent"] == "chat-v1"
            assert models["chat"]["versions"] == {"chat-v1": 0.5, "chat-v2": 0.5}

            def ask(model: str) -> httpx.Response:
                body = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
                return client.post("/v1/chat/completions", json=body)

            adapter = ask("sql")  # started with --lora-modules sql=/adapters/sql
            assert adapter.status_code == 200, adapter.text
            assert adapter.json()["model"] == "sql"
            assert adapter.headers["x-pilothouse-endpoint"].startswith("chat-v1")
            versions = [ask("chat").headers["x-pilothouse-model"] for _ in range(4)]
            assert sorted(versions) == ["chat-v1", "chat-v1", "chat-v2", "chat-v2"]

            spec.write_text(FLEET.format(v1=0, v2=1))
            applied = CliRunner().invoke(cli, ["apply", "-f", str(spec), "--url", base])
            assert applied.exit_code == 0, applied.output
            assert {ask("chat").headers["x-pilothouse-model"] for _ in range(4)} == {"chat-v2"}
    finally:
        stop(proc, timeout_s=10)
        for pid in children(proc.pid):
            kill_quietly(pid)
