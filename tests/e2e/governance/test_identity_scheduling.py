"""Identity feeds scheduling: the team is the fairness id, the key and team cap priority.

Under overload (one slot, a queue of two) a noisy tenant that floods the gateway and claims
the highest priority in its headers is shed first: its team's ``max_priority`` caps what it
asks for, and a quiet team's default priority puts its request ahead.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import orjson
import pytest

from pilothouse.config.fleet import FlowControlSpec, GatewaySpec, SaturationSpec
from pilothouse.config.governance import GovernanceSpec
from pilothouse.governance.store import SqlStore
from tests.e2e.gateway_harness import running_gateway

pytestmark = pytest.mark.e2e


def _keys(state_dir: Path) -> tuple[str, str]:
    state_dir.mkdir(parents=True, exist_ok=True)
    store = SqlStore(f"sqlite:///{state_dir / 'governance.db'}")
    try:
        store.migrate()
        store.create_org("acme")
        store.create_team("acme", "noisy", max_priority=0, default_priority=0)
        store.create_team("acme", "quiet", default_priority=5)
        noisy, _ = store.create_key("noisy", "batch")
        quiet, _ = store.create_key("quiet", "app")
    finally:
        store.close()
    return noisy, quiet


def _spec(state_dir: Path) -> GatewaySpec:
    return GatewaySpec(
        port=0,
        probe_interval_s=0.1,
        read_timeout_s=10,
        trust_priority_header=True,  # a numeric header is honoured — and still capped
        flow_control=FlowControlSpec(
            enabled=True,
            max_queue=2,
            queue_timeout_s=10.0,
            saturation=SaturationSpec(max_in_flight_per_replica=1),
        ),
        governance=GovernanceSpec(state_dir=state_dir, sync_interval_s=0.1),
    )


async def _chat(client: httpx.AsyncClient, url: str, tag: str, key: str) -> httpx.Response:
    body = {"model": "m", "messages": [{"role": "user", "content": tag}], "max_tokens": 4}
    return await client.post(
        url + "/v1/chat/completions",
        content=orjson.dumps(body),
        headers={
            "content-type": "application/json",
            "authorization": f"Bearer {key}",
            "x-pilothouse-priority": "99",  # everyone claims the top
            "x-pilothouse-tenant": "someone-else",  # and another tenant: the team wins
        },
    )


async def test_the_noisy_team_is_shed_first_whatever_its_headers_claim(tmp_path: Path) -> None:
    noisy, quiet = _keys(tmp_path)
    async with (
        running_gateway(["r0"], _spec(tmp_path)) as gw,
        httpx.AsyncClient(timeout=20) as client,
    ):
        engine = gw.engines["r0"]
        engine.hang_s = 0.6

        def send(tag: str, key: str) -> asyncio.Task[httpx.Response]:
            return asyncio.create_task(_chat(client, gw.url, tag, key))

        busy = send("busy", noisy)  # takes the only slot
        while engine.requests < 1:  # noqa: ASYNC110 - the fake engine exposes only a counter
            await asyncio.sleep(0.01)
        flood = [send(f"flood-{i}", noisy) for i in range(2)]  # the queue is now full
        await asyncio.sleep(0.2)
        urgent = send("quiet", quiet)  # priority 5 (its team's) displaces a noisy one
        replies = await asyncio.gather(busy, *flood, urgent)
        statuses = [r.status_code for r in replies]
        assert statuses[0] == 200
        assert sorted(statuses[1:3]) == [200, 429]  # one flood request was shed
        assert statuses[3] == 200
        served = [orjson.loads(b)["messages"][0]["content"] for b in engine.seen_bodies]
        assert served[:2] == ["busy", "quiet"]  # the quiet team went ahead of the queue
