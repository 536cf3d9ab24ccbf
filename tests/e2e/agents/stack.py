"""A whole agent stack on loopback, as real processes: the simulator answering from a script,
the governed gateway, the tool gateway over a logging MCP server, and the agent CLI."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from pilothouse.governance.agent_runs import RunBook, RunRecord
from pilothouse.governance.store import SqlStore
from pilothouse.governance.tool_store import ToolStore
from tests.e2e.engine_procs import engine_process, free_port, sim_url
from tests.e2e.procs import start_until_ready, stop

LEDGER_SERVER = Path(__file__).with_name("ledger_server.py")
MODEL = "sim-model"


@dataclass
class Stack:
    tmp: Path
    fleet: Path
    gateway: str
    tools: str
    tool_log: Path
    store_url: str

    def agent_args(self, *args: str) -> list[str]:
        return [
            sys.executable, "-m", "pilothouse", "agent", *args, "-f", str(self.fleet),
            "--gateway", self.gateway, "--tools", self.tools, "--poll", "0.1",
        ]  # fmt: skip

    def start_agent(self, *args: str, log: str) -> subprocess.Popen[str]:
        with (self.tmp / log).open("w") as out:
            return subprocess.Popen(
                self.agent_args(*args), stdout=out, stderr=subprocess.STDOUT, text=True
            )

    def run(self, run_id: str) -> RunRecord | None:
        store = SqlStore(self.store_url)
        try:
            return RunBook(store).run(run_id)
        finally:
            store.close()

    def tool_calls(self) -> list[dict[str, Any]]:
        import json

        if not self.tool_log.exists():
            return []
        return [json.loads(line) for line in self.tool_log.read_text().splitlines()]


def wait_for(probe: Any, what: str, timeout_s: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@contextlib.contextmanager
def agent_stack(
    tmp: Path,
    script: dict[str, Any],
    agents: list[dict[str, Any]],
    gateway: dict[str, Any] | None = None,
    fleet_extra: dict[str, Any] | None = None,
) -> Iterator[Stack]:
    """Sim (scripted) → gateway; tool gateway → the ledger server; a team ``research`` in
    org ``acme`` for the agents; the ledger server's tools pinned. ``gateway``: more of the
    fleet's ``gateway:`` block (merged into the stack's own, ``governance`` too);
    ``fleet_extra``: more top-level sections (``tracing``)."""
    state = tmp / "state"
    store_url = f"sqlite:///{state / 'governance.db'}"
    store = SqlStore(store_url)
    store.migrate()
    store.create_org("acme")
    store.create_team("acme", "research")
    store.close()
    (tmp / "script.yaml").write_text(yaml.safe_dump(script))
    tool_log = tmp / "tool-calls.jsonl"
    args = ["sim", "--port", "0", "--model", MODEL, "--time-scale", "50",
            "--script", str(tmp / "script.yaml")]  # fmt: skip
    with engine_process(args, tmp / "sim.log") as sim:
        endpoint = urlsplit(sim_url(sim)).netloc
        port = free_port()
        fleet = {
            "models": [{"name": MODEL, "engine": "sim", "endpoints": [endpoint]}],
            "gateway": {
                "port": port,
                "access_log": False,
                "governance": {"state_dir": str(state), "sync_interval_s": 0.1},
            },
            "tools": {
                "servers": [
                    {"name": "ledger",
                     "command": [sys.executable, str(LEDGER_SERVER), str(tool_log)]}
                ],
            },
            "agents": agents,
        }  # fmt: skip
        fleet["gateway"] = _merged(fleet["gateway"], gateway or {})
        fleet.update(fleet_extra or {})
        path = tmp / "fleet.yaml"
        path.write_text(yaml.safe_dump(fleet))
        gateway, url = start_until_ready(["gateway", "-f", str(path)], tmp / "gateway.log")
        try:
            tools, tools_url = start_until_ready(
                ["toolgateway", "-f", str(path), "--port", "0"], tmp / "toolgateway.log"
            )
            try:
                _pin(store_url, "ledger")
                yield Stack(tmp, path, url.removesuffix("/v1"), tools_url, tool_log, store_url)
            finally:
                stop(tools)
        finally:
            stop(gateway)


def _merged(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for name, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(name), dict):
            out[name] = _merged(out[name], value)
        else:
            out[name] = value
    return out


def _pin(store_url: str, server: str) -> None:
    """Approve what the tool gateway observed of ``server`` (tools start quarantined)."""
    store = SqlStore(store_url)
    try:
        tools = ToolStore(store)
        wait_for(lambda: any(c.server == server for c in tools.review()), "the tool listing")
        tools.approve(server, by="test-admin")
    finally:
        store.close()


def decide(store_url: str, approval_id: str, approve: bool = True) -> None:
    store = SqlStore(store_url)
    try:
        ToolStore(store).decide(approval_id, approve, "alice", time.time())
    finally:
        store.close()
