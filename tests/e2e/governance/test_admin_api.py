"""The governance admin API: orgs, teams, keys, quotas and usage over HTTP."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from pilothouse.config.fleet import parse_fleet
from pilothouse.servers.sim import SimSettings
from tests.e2e.sim_gateway import SimGateway, sim_gateway

pytestmark = pytest.mark.e2e

MODEL = "sim-model"
ADMIN = {"authorization": "Bearer admin-secret"}


def _fleet(state_dir: Path, governance: bool = True) -> Any:
    gateway: dict[str, Any] = {"port": 0, "admin": {"api_key": "admin-secret"}}
    if governance:
        gateway["governance"] = {"state_dir": str(state_dir), "ledger": {"flush_interval_s": 0.05}}
    return parse_fleet(
        {
            "models": [{"name": MODEL, "engine": "sim", "endpoints": ["127.0.0.1:1"]}],
            "gateway": gateway,
        }
    )


REPLICAS = [("r0", SimSettings(port=0, model=MODEL, time_scale=50.0))]


async def _chat(client: httpx.AsyncClient, gw: SimGateway, key: str) -> httpx.Response:
    body = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
    return await client.post(
        gw.url + "/v1/chat/completions", json=body, headers={"authorization": f"Bearer {key}"}
    )


async def test_admin_api_manages_orgs_teams_keys_and_reports_usage(tmp_path: Path) -> None:
    async with (
        sim_gateway(_fleet(tmp_path), REPLICAS) as gw,
        httpx.AsyncClient(base_url=gw.url, timeout=10) as client,
    ):
        org = await client.post("/admin/orgs", json={"name": "acme"}, headers=ADMIN)
        assert org.status_code == 201, org.text
        team = await client.post(
            "/admin/teams",
            json={"org": "acme", "name": "research", "quota": {"requests_per_min": 2}},
            headers=ADMIN,
        )
        assert team.status_code == 201, team.text
        created = await client.post(
            "/admin/keys",
            json={"team": "research", "name": "ci", "models": [MODEL]},
            headers=ADMIN,
        )
        assert created.status_code == 201, created.text
        key = created.json()["key"]
        assert key.startswith("ph-")
        listed = (await client.get("/admin/keys", headers=ADMIN)).json()["keys"]
        assert [k["name"] for k in listed] == ["ci"]
        assert "key" not in listed[0]  # the plaintext is shown once, at creation
        assert key not in str(listed)

        assert (await _chat(client, gw, key)).status_code == 200
        assert (await _chat(client, gw, key)).status_code == 200
        limited = await _chat(client, gw, key)  # the team's 2 requests per minute are used
        assert limited.status_code == 429
        team_id = team.json()["id"]
        raised = await client.put(
            f"/admin/quotas/{team_id}", json={"requests_per_min": 100}, headers=ADMIN
        )
        assert raised.status_code == 200, raised.text
        assert (await _chat(client, gw, key)).status_code == 200  # read back at once

        governance = gw.app.ctx.governance
        assert governance is not None
        assert await governance.ledger.flush(timeout_s=10)
        usage = await client.get("/admin/usage?by=team,model", headers=ADMIN)
        assert usage.status_code == 200, usage.text
        [row] = usage.json()["rows"]
        assert row["team"] == team_id
        assert row["model"] == MODEL
        assert row["requests"] == 3


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        ("POST", "/admin/teams", {"org": "nowhere", "name": "t"}, 404),
        ("POST", "/admin/orgs", {"name": ""}, 400),
        ("POST", "/admin/orgs", {"name": "acme", "extra": 1}, 400),
        ("POST", "/admin/keys", {"team": "t", "name": "k", "networks": ["not-a-cidr"]}, 400),
        ("POST", "/admin/keys/key_missing/revoke", {}, 404),
        ("GET", "/admin/usage?by=colour", None, 400),
        ("GET", "/admin/usage?since=yesterday", None, 400),
    ],
)
async def test_admin_api_answers_bad_input_with_a_4xx(
    tmp_path: Path, method: str, path: str, body: Any, status: int
) -> None:
    async with (
        sim_gateway(_fleet(tmp_path), REPLICAS) as gw,
        httpx.AsyncClient(base_url=gw.url, timeout=10) as client,
    ):
        reply = await client.request(method, path, json=body, headers=ADMIN)
        assert reply.status_code == status, reply.text
        assert reply.json()["error"]["message"]


async def test_admin_api_needs_its_credential_and_governance(tmp_path: Path) -> None:
    async with (
        sim_gateway(_fleet(tmp_path), REPLICAS) as gw,
        httpx.AsyncClient(base_url=gw.url, timeout=10) as client,
    ):
        assert (await client.get("/admin/keys")).status_code == 401
        wrong = await client.get("/admin/keys", headers={"authorization": "Bearer nope"})
        assert wrong.status_code == 401
    async with (
        sim_gateway(_fleet(tmp_path, governance=False), REPLICAS) as gw,
        httpx.AsyncClient(base_url=gw.url, timeout=10) as client,
    ):
        off = await client.get("/admin/keys", headers=ADMIN)
        assert off.status_code == 404
        assert "governance is off" in off.json()["error"]["message"]


async def test_admin_api_lists_and_decides_tool_approvals_and_audits_them(tmp_path: Path) -> None:
    from pilothouse.governance.tool_store import ToolStore
    from tests.e2e.governance.stores import sqlite_store

    with sqlite_store(tmp_path) as store:
        tools = ToolStore(store)
        pending = tools.request_approval(
            "s1", "key_a", "crm__pay", "h1", "egress", 600, time.time()
        )
    async with (
        sim_gateway(_fleet(tmp_path), REPLICAS) as gw,
        httpx.AsyncClient(base_url=gw.url, timeout=10) as client,
    ):
        listed = await client.get("/admin/approvals?status=pending", headers=ADMIN)
        assert listed.status_code == 200, listed.text
        assert [a["id"] for a in listed.json()["approvals"]] == [pending.id]
        nobody = await client.post(f"/admin/approvals/{pending.id}/approve", json={}, headers=ADMIN)
        assert nobody.status_code == 400  # who decides is required
        decided = await client.post(
            f"/admin/approvals/{pending.id}/approve", json={"by": "alice"}, headers=ADMIN
        )
        assert decided.status_code == 200, decided.text
        assert decided.json()["status"] == "approved"
        again = await client.post(
            f"/admin/approvals/{pending.id}/deny", json={"by": "bob"}, headers=ADMIN
        )
        assert again.status_code == 409
    with sqlite_store(tmp_path) as store:
        records = ToolStore(store).records()
        assert [(r.kind, r.principal, r.decision) for r in records] == [
            ("approval_decision", "alice", "approved")
        ]
        assert ToolStore(store).verify().ok
