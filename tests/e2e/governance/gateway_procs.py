"""A governed gateway as a real process, over a simulator replica, and what to read from it:
the store's ledger per request id, the ledger's gauges on ``/metrics``, the process's RSS."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import yaml
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import create_engine, select

from pilothouse.governance.store import SqlStore
from pilothouse.governance.tables import ledger
from tests.e2e.engine_procs import engine_process, sim_url

MODEL = "sim-model"


@contextlib.contextmanager
def sim_replica(log: Path, time_scale: float = 20.0) -> Iterator[str]:
    """``pilothouse engine sim`` on a free port; yields its ``host:port``."""
    args = ["sim", "--port", "0", "--model", MODEL, "--time-scale", str(time_scale)]
    with engine_process(args, log) as proc:
        yield urlsplit(sim_url(proc)).netloc


def write_fleet(path: Path, endpoint: str, port: int, governance: dict[str, Any]) -> Path:
    fleet = {
        "models": [{"name": MODEL, "engine": "sim", "endpoints": [endpoint]}],
        "gateway": {"port": port, "access_log": False, "governance": governance},
    }
    path.write_text(yaml.safe_dump(fleet))
    return path


def make_tenant(url: str) -> str:
    """Migrate the store at ``url``; an org, a team and one key (its plaintext returned)."""
    store = SqlStore(url)
    try:
        store.migrate()
        store.create_org("acme")
        store.create_team("acme", "research")
        plaintext, _ = store.create_key("research", "load")
    finally:
        store.close()
    return plaintext


def ledger_rows(url: str) -> dict[str, tuple[int, int]]:
    """The store's ledger: request id → (prompt, completion) tokens."""
    engine = create_engine(url)
    try:
        query = select(ledger.c.request_id, ledger.c.prompt_tokens, ledger.c.completion_tokens)
        with engine.connect() as conn:
            return {rid: (int(p), int(c)) for rid, p, c in conn.execute(query)}
    finally:
        engine.dispose()


@dataclass(frozen=True, slots=True)
class LedgerGauges:
    buffered: int
    on_disk: int
    written: int
    failures: int


async def ledger_gauges(client: httpx.AsyncClient, base_url: str) -> LedgerGauges:
    """The ledger's series on the gateway's ``/metrics``."""
    response = await client.get(base_url + "/metrics")
    response.raise_for_status()
    found: dict[str, float] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            if sample.name == "pilothouse_ledger_entries":
                found[sample.labels["state"]] = sample.value
            elif sample.name in ("pilothouse_ledger_written_total",
                                 "pilothouse_ledger_flush_failures_total"):  # fmt: skip
                found[sample.name] = sample.value
    return LedgerGauges(
        int(found["buffered"]),
        int(found["on_disk"]),
        int(found["pilothouse_ledger_written_total"]),
        int(found["pilothouse_ledger_flush_failures_total"]),
    )


def rss_kib(pid: int) -> int:
    """Resident memory of ``pid`` (VmRSS, KiB)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for {pid}")
