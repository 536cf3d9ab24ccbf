"""``pilothouse up`` runs the fleet's tool gateway beside its replicas, restarts it when it
dies, and stops it."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx2
import pytest
import yaml
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from tests.e2e.procs import alive, children, start_until_ready, stop

pytestmark = pytest.mark.e2e

TOOL_SERVER = Path(__file__).parent / "toolgateway" / "tool_server.py"


def _cli(*args: str, state: Path) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "pilothouse", *args, "--state-dir", str(state)],
        capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    return done.stdout.strip()


def _tool_gateway_url(log: Path, timeout_s: float = 60.0, again: bool = False) -> str:
    deadline = time.monotonic() + timeout_s
    # The console wraps long lines (the URL may be on the next one, after the source path).
    said = "tool-gateway ready again on" if again else "tool-gateway ready on"
    while time.monotonic() < deadline:
        found = re.search(rf"{said}.*?(http://\S+)", log.read_text(), re.DOTALL)
        if found:
            return found.group(1)
        time.sleep(0.2)
    raise AssertionError(f"no tool gateway in the log:\n{log.read_text()[-2000:]}")


async def _echo(url: str, key: str) -> bool:
    headers = {"Authorization": f"Bearer {key}"}
    async with (
        httpx2.AsyncClient(headers=headers, timeout=30) as http,
        Client(streamable_http_client(url, http_client=http), cache=None) as client,
    ):
        assert "crm__echo" in {t.name for t in (await client.list_tools()).tools}
        result = await client.call_tool("crm__echo", {"text": "hi"})
    return not result.is_error


def _tool_gateways(up: int) -> list[int]:
    return [pid for pid in children(up) if "toolgateway" in _cmdline(pid)]


async def test_up_serves_the_tool_gateway_restarts_it_and_stops_it(tmp_path: Path) -> None:
    state = tmp_path / "state"
    fleet = {
        "models": [{"name": "chat", "engine": "sim", "replicas": 1}],
        "gateway": {"port": 0, "governance": {"state_dir": str(state)}},
        "local": {"tool_gateway_port": 0},
        "tools": {"servers": [{"name": "crm", "command": [sys.executable, str(TOOL_SERVER)]}]},
    }
    spec = tmp_path / "fleet.yaml"
    spec.write_text(yaml.safe_dump(fleet))
    log = tmp_path / "up.log"
    up, _ = start_until_ready(["up", "-f", str(spec), "--log-dir", str(tmp_path / "logs")], log)
    try:
        url = _tool_gateway_url(log)
        first = _tool_gateways(up.pid)
        assert len(first) == 1
        _cli("orgs", "create", "acme", state=state)
        _cli("teams", "create", "acme", "support", state=state)
        key = _cli("keys", "create", "--team", "support", "--name", "bot", state=state)
        key = key.split()[-1]
        _cli("tools", "approve", "crm", "--by", "admin", state=state)
        assert await _echo(url, key)
        # It dies (a crash, an OOM kill): `up` starts it again, on the URL callers have.
        os.kill(first[0], signal.SIGKILL)
        assert _tool_gateway_url(log, again=True) == url
        second = _tool_gateways(up.pid)
        assert len(second) == 1
        assert second != first
        assert await _echo(url, key)
    finally:
        assert stop(up, signal.SIGINT) == 0
    assert not any(alive(pid) for pid in [*first, *second])


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""
