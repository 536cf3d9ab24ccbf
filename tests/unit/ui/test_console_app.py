"""The console's routes on a gateway app: login, sessions, CSRF, Host/Origin, escaping, and
the decisions the proxy records (Starlette's test client; no process, no browser)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import orjson
from starlette.testclient import TestClient

from pilothouse.clock import ManualClock, SystemClock
from pilothouse.config.fleet import GatewaySpec
from pilothouse.endpoints.pool import EndpointPool
from pilothouse.gateway.app import create_app
from pilothouse.gateway.console import mount_console
from pilothouse.gateway.context import GatewayContext
from pilothouse.gateway.metrics import GatewayMetrics
from pilothouse.gateway.proxy import ProxyEndpoint
from pilothouse.openai.requests import Route
from pilothouse.scheduling.config import builtin_config
from pilothouse.scheduling.scheduler import build_scheduler
from pilothouse.scheduling.types import Endpoint
from pilothouse.testing import Answer, FakeTransport

KEY = "admin-s3cret"
BASE = "http://127.0.0.1:8000"


def _client(**gateway: Any) -> TestClient:
    pool = EndpointPool()
    pool.add(Endpoint(name="a", address="10.0.0.1:8000", model="<b>m</b>"), ready=True)
    settings = GatewaySpec(access_log=False, **gateway)
    clock = SystemClock()
    scheduler = build_scheduler(builtin_config("round-robin"), clock)
    app = create_app(settings, pool, scheduler, clock=clock, monitor=False)
    return TestClient(app, base_url=BASE, follow_redirects=False)


def _login(client: TestClient) -> None:
    reply = client.post("/ui/login", data={"key": KEY})
    assert reply.status_code == 303
    cookie = reply.headers["set-cookie"]
    assert "HttpOnly" in cookie
    assert "SameSite=strict" in cookie or "SameSite=Strict" in cookie
    assert KEY not in cookie


def test_pages_need_a_login_with_the_admin_credential() -> None:
    with _client(admin={"api_key": KEY}) as client:
        assert client.get("/ui/fleet").headers["location"] == "/ui/login"
        assert client.get("/ui/api/fleet").status_code == 401
        assert client.post("/ui/login", data={"key": "wrong"}).status_code == 401
        _login(client)
        page = client.get("/ui/fleet")
        assert page.status_code == 200
        assert "default-src 'self'" in page.headers["content-security-policy"]
        assert "10.0.0.1:8000" in page.text
        client.post("/ui/logout")
        assert client.get("/ui/fleet").status_code == 303


def test_everything_shown_is_escaped() -> None:
    with _client(admin={"api_key": KEY}) as client:
        _login(client)
        page = client.get("/ui/fleet").text
        assert "&lt;b&gt;m&lt;/b&gt;" in page
        assert "<b>m</b>" not in page


def test_a_post_without_the_sessions_csrf_token_is_refused() -> None:
    with _client(admin={"api_key": KEY}) as client:
        _login(client)
        assert client.post("/ui/audit", data={"csrf": "forged"}).status_code == 403
        assert client.post("/ui/approvals/ap-1/approve", data={}).status_code == 403


def test_a_foreign_origin_or_host_is_refused() -> None:
    with _client(admin={"api_key": KEY}) as client:
        evil = {"origin": "https://evil.example"}
        assert client.post("/ui/login", data={"key": KEY}, headers=evil).status_code == 403
        rebound = {"host": "evil.example"}
        assert client.get("/ui/login", headers=rebound).status_code == 403
        own = {"origin": BASE}
        assert client.post("/ui/login", data={"key": KEY}, headers=own).status_code == 303


def test_parts_not_configured_say_how_to_enable_them() -> None:
    with _client(admin={"api_key": KEY}) as client:
        _login(client)
        for page in ("tenants", "agents", "approvals", "audit"):
            text = client.get(f"/ui/{page}").text
            assert "Not enabled" in text
            assert "gateway.governance" in text
        assert "gateway.ui.reports_dir" in client.get("/ui/reports").text
        assert "pilothouse up" in client.get("/ui/fleet").text  # no control plane


def test_without_an_admin_credential_the_console_says_how_to_set_one() -> None:
    with _client() as client:
        reply = client.get("/ui/fleet")
        assert reply.status_code == 404
        assert "gateway.admin.api_key" in reply.text


def test_disabled_the_console_is_not_served() -> None:
    with _client(admin={"api_key": KEY}, ui={"enabled": False}) as client:
        assert client.get("/ui/login").status_code == 404


def test_reports_list_results_and_serve_only_listed_plots(tmp_path: Path) -> None:
    report = tmp_path / "b2b"
    report.mkdir()
    runs = [{"policy": "prefix-load", "qps": 4.0, "completed": 40, "failed": 0}]
    doc = {"workload": "b2b-saas", "preset": "a100", "replicas": 2, "runs": runs}
    (report / "results.json").write_bytes(orjson.dumps(doc))
    (report / "ttft.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    (tmp_path / "secret.png").write_bytes(b"no")
    with _client(admin={"api_key": KEY}, ui={"reports_dir": str(tmp_path)}) as client:
        _login(client)
        page = client.get("/ui/reports").text
        assert "prefix-load" in page
        assert "/ui/reports/b2b/ttft.png" in page
        assert client.get("/ui/reports/b2b/ttft.png").content.startswith(b"\x89PNG")
        assert client.get("/ui/reports/b2b/..%2Fsecret.png").status_code == 404


def test_the_proxy_records_each_request_only_when_the_console_is_served() -> None:
    async def call(ctx: GatewayContext) -> None:
        raw = orjson.dumps({"model": "m", "messages": [{"role": "user", "content": "hi"}]})
        scope = {"type": "http", "method": "POST", "path": "/v1/chat/completions", "headers": []}
        queue = asyncio.Queue[dict[str, Any]]()
        queue.put_nowait({"type": "http.request", "body": raw, "more_body": False})

        async def send(message: dict[str, Any]) -> None:
            return None

        await ProxyEndpoint(Route.CHAT, ctx)(scope, queue.get, send)

    def context(**gateway: Any) -> GatewayContext:
        pool = EndpointPool()
        pool.add(Endpoint(name="a", address="10.0.0.1:8000", model="m"), ready=True)
        clock = ManualClock()
        ctx = GatewayContext(
            settings=GatewaySpec(access_log=False, **gateway),
            pool=pool,
            scheduler=build_scheduler(builtin_config("round-robin"), clock),
            metrics=GatewayMetrics(),
            clock=clock,
            transport=FakeTransport().always("10.0.0.1:8000", Answer.json({"ok": True})),
        )
        mount_console(ctx)
        return ctx

    served = context(admin={"api_key": KEY})
    asyncio.run(call(served))
    assert served.decisions is not None
    (record,) = served.decisions.recent()
    assert (record.status, record.endpoint, record.model) == (200, "a", "m")
    assert record.choice is not None
    assert record.choice.picked == "a"
    off = context()
    asyncio.run(call(off))
    assert off.decisions is None
    assert off.pipeline.on_scheduled is None
