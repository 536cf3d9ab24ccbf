"""The gateway restarts while PostgreSQL is down: it starts from the directory it kept,
serves known keys, and the ledger reaches the store once it is back."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

import httpx
import pytest

from pilothouse.testing.postgres import PostgresServer, find_bindir
from tests.e2e.engine_procs import free_port
from tests.e2e.governance.gateway_procs import (
    MODEL,
    ledger_rows,
    make_tenant,
    sim_replica,
    write_fleet,
)
from tests.e2e.procs import start_until_ready, stop

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(find_bindir() is None, reason="PostgreSQL is not installed (make setup)"),
]


async def _chat(url: str, key: str, request_id: str) -> int:
    async with httpx.AsyncClient(timeout=30) as client:
        resp = await client.post(
            f"{url}/chat/completions",
            headers={"authorization": f"Bearer {key}", "x-request-id": request_id},
            json={"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 8},
        )
    return resp.status_code


async def test_gateway_restarted_during_a_store_outage_serves_the_keys_it_knew(
    tmp_path: Path,
) -> None:
    with PostgresServer() as pg:
        store = pg.create_database("pilothouse")
        key = make_tenant(store)
        governance = {"store": store, "state_dir": str(tmp_path / "state")}
        with sim_replica(tmp_path / "sim.log") as endpoint:
            fleet = write_fleet(tmp_path / "fleet.yaml", endpoint, free_port(), governance)
            args = ["gateway", "-f", str(fleet)]
            gateway, url = await asyncio.to_thread(start_until_ready, args, tmp_path / "gw1.log")
            try:
                assert await _chat(url, key, "before") == 200
            finally:
                assert await asyncio.to_thread(stop, gateway, signal.SIGTERM, 60) == 0
            await asyncio.to_thread(pg.stop)
            # Restarted while the store is away: it starts all the same.
            gateway, url = await asyncio.to_thread(start_until_ready, args, tmp_path / "gw2.log")
            try:
                assert await _chat(url, key, "during") == 200
                assert await _chat(url, "ph-unknown", "stranger") == 401
                await asyncio.to_thread(pg.start)
                deadline = time.monotonic() + 60
                while set(ledger_rows(store)) != {"before", "during"}:
                    assert time.monotonic() < deadline, "the ledger did not reach the store"
                    await asyncio.sleep(0.5)
                assert await _chat(url, key, "after") == 200
            finally:
                assert await asyncio.to_thread(stop, gateway, signal.SIGTERM, 60) == 0
        assert set(ledger_rows(store)) == {"before", "during", "after"}
    assert "governance store unreachable at start" in (tmp_path / "gw2.log").read_text()
