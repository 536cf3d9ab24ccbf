"""``pilothouse up`` runs the fleet's tool gateway beside its replicas, and stops it."""

from __future__ import annotations

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


def _tool_gateway_url(log: Path, timeout_s: float = 60.0) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = re.search(r"tool-gateway ready on (\S+)", log.read_text())
        if found:
            return found.group(1)
        time.sleep(0.2)
    raise AssertionError(f"no tool gateway in the log:\n{log.read_text()[-2000:]}")


async def test_up_serves_the_tool_gateway_and_stops_it(tmp_path: Path) -> None:
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
        tool_gateway = [pid for pid in children(up.pid) if "toolgateway" in _cmdline(pid)]
        assert len(tool_gateway) == 1
        _cli("orgs", "create", "acme", state=state)
        _cli("teams", "create", "acme", "support", state=state)
        key = _cli("keys", "create", "--team", "support", "--name", "bot", state=state)
        _cli("tools", "approve", "crm", "--by", "admin", state=state)
        headers = {"Authorization": f"Bearer {key.split()[-1]}"}
        async with (
            httpx2.AsyncClient(headers=headers, timeout=30) as http,
            Client(streamable_http_client(url, http_client=http), cache=None) as client,
        ):
            assert "crm__echo" in {t.name for t in (await client.list_tools()).tools}
            result = await client.call_tool("crm__echo", {"text": "hi"})
        assert not result.is_error
    finally:
        assert stop(up, signal.SIGINT) == 0
    assert not any(alive(pid) for pid in tool_gateway)


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""
