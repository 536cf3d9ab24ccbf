"""The real tool gateway (``python -m pilothouse toolgateway -f fleet.yaml``, a process) in
front of the attack servers, with governance in a temporary SQLite store; and what a test
reads back: what each server received, and the audit log.

Setup is what an operator does: keys are created in the store before the gateway starts;
the gateway observes every server's listing at startup; the admin then pins the listings
it trusts (``ToolStore.approve``, as ``pilothouse tools approve`` does) before any agent
connects, and :func:`running` waits until the gateway serves those pins.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import time
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
import yaml
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from pilothouse.governance.store import SqlStore
from pilothouse.governance.tool_store import AuditRecord, ToolStore
from tests.e2e.governance.stores import sqlite_store
from tests.e2e.procs import start_until_ready, stop
from tests.e2e.toolgateway.attack_servers.common import HTTP_READY, received

ROOT = Path(__file__).parents[4]
PACKAGE = "tests.e2e.toolgateway.attack_servers"
TRACKER_TOKEN = "trk-7d41c0a9e2"
"""The secret the gateway injects into the tracker (which echoes it)."""
PASTE_TOKEN = "pst-58be11f0c3"

LABELS: Mapping[str, Mapping[str, list[str]]] = {
    "tracker": {"get_issue": ["untrusted_output"]},
    "crm": {"customer": ["sensitive"]},
    "paste": {"upload": ["egress"]},
    "mail": {"send_email": ["egress"]},
}
BUDGETS = {"calls_per_session": 10, "calls_per_minute": 15}
"""Per session, and per identity across its sessions (a rolling minute)."""


@dataclass(frozen=True, slots=True)
class Key:
    plaintext: str
    subject: str
    """The identity's subject: the audit log's ``principal``."""


@dataclass
class Running:
    url: str
    """``http://127.0.0.1:PORT/mcp``"""
    state_dir: Path
    records: Path
    keys: dict[str, Key]

    def received(self, server: str) -> list[dict[str, Any]]:
        """Every call ``server`` received (its own record, not the gateway's)."""
        return received(self.records / f"{server}.jsonl")

    @contextlib.contextmanager
    def store(self) -> Iterator[ToolStore]:
        """The governance store's tool tables, as the admin CLI opens them."""
        with sqlite_store(self.state_dir) as sql:
            yield ToolStore(sql)

    def audit(
        self, where: Callable[[AuditRecord], bool], at_least: int = 1, timeout_s: float = 15.0
    ) -> list[AuditRecord]:
        """The audit rows matching ``where``, once there are ``at_least`` (the gateway
        writes its audit log in batches, a fraction of a second behind): AssertionError if
        they do not appear in ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        with self.store() as tools:
            while True:
                found = [r for r in tools.records() if where(r)]
                if len(found) >= at_least or time.monotonic() > deadline:
                    break
                time.sleep(0.1)
        assert len(found) >= at_least, f"{len(found)} such audit rows, not {at_least}"
        return found

    def verify_audit(self) -> None:
        """``pilothouse audit verify``: the hash chain is intact."""
        with self.store() as tools:
            verdict = tools.verify()
        assert verdict.ok, verdict


def _stdio(name: str, module: str, records: Path, **env: str) -> dict[str, Any]:
    return {
        "name": name,
        "command": [sys.executable, "-m", f"{PACKAGE}.{module}"],
        "env": {"PYTHONPATH": str(ROOT), "RECORD": str(records / f"{name}.jsonl"), **env},
        "labels": LABELS.get(name, {}),
        "timeout_s": 20,
    }


STDIO = {
    "crm": "crm",
    "tracker": "tracker",
    "poison": "poison",
    "rug": "rug_pull",
    "mail": "mail",
    "shadow": "shadow",
    "bank": "bank",
    "loop": "loop",
}


def write_fleet(tmp: Path, servers: Sequence[str], paste_url: str | None) -> Path:
    """fleet.yaml: governance in ``tmp/state``, the named stdio servers, the paste server
    at ``paste_url`` (streamable HTTP), approvals for every bank transfer, budgets."""
    records = tmp / "records"
    records.mkdir(exist_ok=True)
    (tmp / "tracker.token").write_text(TRACKER_TOKEN)
    (tmp / "paste.token").write_text(PASTE_TOKEN)
    specs = []
    for name in servers:
        env = {"TOKEN": "${secret:TRACKER_TOKEN}"} if name == "tracker" else {}
        specs.append(_stdio(name, STDIO[name], records, **env))
    if paste_url is not None:
        specs.append(
            {
                "name": "paste",
                "url": paste_url,
                "headers": {"X-Api-Key": "${secret:PASTE_TOKEN}"},
                "labels": LABELS["paste"],
            }
        )
    fleet = {
        "models": [{"name": "m", "engine": "sim", "endpoints": ["127.0.0.1:1"]}],
        "gateway": {"governance": {"state_dir": str(tmp / "state")}},
        "tools": {
            "servers": specs,
            "approvals": [{"tools": ["bank__transfer"], "ttl_s": 600}],
            "budgets": BUDGETS,
            "secrets": {
                "TRACKER_TOKEN": f"file:{tmp / 'tracker.token'}",
                "PASTE_TOKEN": f"file:{tmp / 'paste.token'}",
            },
        },
    }
    path = tmp / "fleet.yaml"
    path.write_text(yaml.safe_dump(fleet))
    return path


def create_keys(state_dir: Path, names: Sequence[str]) -> dict[str, Key]:
    """One agent key per name, each its own identity (so attacks share no state)."""
    with sqlite_store(state_dir) as store:
        store.create_org("acme")
        store.create_team("acme", "agents")
        return {name: _key(store, name) for name in names}


def _key(store: SqlStore, name: str) -> Key:
    plaintext, record = store.create_key("agents", name)
    return Key(plaintext, record.id)


@contextlib.contextmanager
def http_server(module: str, records: Path, log: Path) -> Iterator[str]:
    """An attack server over streamable HTTP in its own process; yields its URL."""
    with log.open("w") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", f"{PACKAGE}.{module}", "--http"],
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
            env={"PYTHONPATH": str(ROOT), "RECORD": str(records / f"{module}.jsonl")},
        )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith(HTTP_READY), log.read_text()
        yield line.removeprefix(HTTP_READY).strip()
    finally:
        stop(proc)


@contextlib.contextmanager
def running(
    tmp: Path,
    servers: Sequence[str],
    approve: Mapping[str, Sequence[str] | None],
    keys: Sequence[str],
    listed: Collection[str],
    *,
    paste: bool = True,
) -> Iterator[Running]:
    """The gateway process in front of ``servers`` (and the paste server), ``approve``'s
    pins (server → tools, None: all) in force, one key per name of ``keys``; returns once
    an agent is shown every tool of ``listed``."""
    records = tmp / "records"
    records.mkdir(exist_ok=True)
    made = create_keys(tmp / "state", [*keys, "probe"])
    with contextlib.ExitStack() as stack:
        paste_url = None
        if paste:
            paste_url = stack.enter_context(http_server("paste", records, tmp / "paste.log"))
        fleet = write_fleet(tmp, servers, paste_url)
        proc, url = start_until_ready(
            ["toolgateway", "-f", str(fleet), "--port", "0"], tmp / "gateway.log", 60
        )
        stack.callback(stop, proc)
        gateway = Running(url, tmp / "state", records, made)
        with gateway.store() as tools:
            for server, names in approve.items():
                tools.approve(server, "admin", names)
        asyncio.run(_until_listed(url, made["probe"].plaintext, set(listed)))
        yield gateway


async def _until_listed(url: str, key: str, expected: set[str], timeout_s: float = 20.0) -> None:
    """Until the gateway has reloaded the pins (it checks at most once a second)."""
    headers = {"Authorization": f"Bearer {key}"}
    async with httpx2.AsyncClient(headers=headers, timeout=30) as http:
        transport = streamable_http_client(url, http_client=http)
        async with Client(transport, mode="legacy", cache=None) as client:
            deadline = time.monotonic() + timeout_s
            while True:
                listed = {t.name for t in (await client.list_tools()).tools}
                if expected <= listed:
                    return
                assert time.monotonic() < deadline, f"never listed: {expected - listed}"
                await asyncio.sleep(0.2)
