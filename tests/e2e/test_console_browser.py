"""The web console in a real browser: headless Chromium (Debian's) driven by Playwright
against a governed gateway on a simulated engine, with the tool gateway and an agent.

- every page loads without console errors or uncaught page errors;
- the fleet page's live counters change while a load script sends requests (no reload:
  the page's own refresh script fetches them);
- approving the agent's pending tool call in the console lets the waiting agent finish;
- a key's spend on the tenants page equals the ledger's (the store's usage by key).

``PILOTHOUSE_SCREENSHOTS=DIR`` saves a screenshot of every page there (docs/console.md
shows the set in docs/img/console/). Selected by ``pytest -k browser``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from pilothouse.governance.limits import Limit
from pilothouse.governance.records import Quota
from pilothouse.governance.store import SqlStore
from tests.e2e.agents.stack import MODEL, agent_stack, wait_for

pytestmark = pytest.mark.e2e
playwright_api = pytest.importorskip("playwright.sync_api")

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ADMIN_KEY = "console-admin-key"
PRICES = {MODEL: {"prompt_per_million": 1500.0, "completion_per_million": 6000.0}}
SCRIPT = {
    "replies": [
        {"when": {"last_role": "user"},
         "tool_calls": [{"name": "ledger__balance", "arguments": {}}]},
        {"when": {"last_role": "tool", "turn": 1},
         "tool_calls": [{"name": "ledger__pay", "arguments": {"to": "bob", "usd": 5}}]},
        {"when": {"last_role": "tool"}, "content": "Paid bob 5 USD."},
    ]
}  # fmt: skip
AGENT = {
    "name": "payer",
    "model": MODEL,
    "team": "research",
    "tools": ["ledger__*"],
    "approvals": ["ledger__pay"],
    "budgets": {"tokens": 50_000, "tool_calls": 10, "steps": 10},
    "max_output_tokens": 64,
}
LOAD = 6


class Browser:
    """One page with every console message and page error collected."""

    def __init__(self, page: Any, base: str, shots: Path | None) -> None:
        self.page, self.base, self.shots = page, base, shots
        self.errors: list[str] = []
        page.on("console", lambda m: m.type == "error" and self.errors.append(m.text))
        page.on("pageerror", lambda e: self.errors.append(str(e)))

    def open(self, path: str) -> Any:
        response = self.page.goto(self.base + path)
        assert response is not None
        assert response.status == 200, f"{path}: {response.status}"
        return response

    def shot(self, name: str) -> None:
        if self.shots is not None:
            self.page.screenshot(path=str(self.shots / f"{name}.png"), full_page=True)


def _bench_report(out: Path) -> None:
    """A real, small ``bench sim`` report for the reports page."""
    args = [sys.executable, "-m", "pilothouse", "bench", "sim", "--workload", "b2b-saas",
            "--policies", "round-robin,prefix-load", "--replicas", "2", "--qps", "2,4",
            "--requests", "100", "--out", str(out)]  # fmt: skip
    subprocess.run(args, check=True, capture_output=True, timeout=300)


def test_browser_console_pages_live_data_approval_and_spend(tmp_path: Path) -> None:
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian's chromium is not installed (make services installs it)")
    reports = tmp_path / "reports"
    _bench_report(reports / "b2b-saas")
    shots_env = os.environ.get("PILOTHOUSE_SCREENSHOTS")
    shots = Path(shots_env) if shots_env else None
    if shots is not None:
        shots.mkdir(parents=True, exist_ok=True)
    gateway = {
        "admin": {"api_key": ADMIN_KEY},
        "ui": {"reports_dir": str(reports)},
        "governance": {"prices": PRICES},
    }
    with agent_stack(tmp_path, SCRIPT, [AGENT], gateway) as stack:
        store = SqlStore(stack.store_url)
        try:
            quota = Quota(Limit(requests_per_min=600), budget_cost=5.0, budget_period="day")
            user_key, record = store.create_key("research", "loadgen", quota=quota)
        finally:
            store.close()
        with playwright_api.sync_playwright() as p:
            chromium = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            try:
                page = chromium.new_page(viewport={"width": 1400, "height": 900})
                browser = Browser(page, stack.gateway, shots)
                _login(browser)
                _live_fleet(browser, stack.gateway, user_key)
                _approve(browser, stack)
                _spend(browser, stack.store_url, record.id)
                _the_rest(browser)
                assert browser.errors == []
            finally:
                chromium.close()


def _login(browser: Browser) -> None:
    page = browser.page
    browser.open("/ui/login")
    page.fill("#key", "not-the-key")
    page.click("button[type=submit]")
    assert "not the admin credential" in page.inner_text("#login-error")
    assert browser.errors == [  # the refused login itself (401), and nothing else
        "Failed to load resource: the server responded with a status of 401 (Unauthorized)"
    ]
    browser.errors.clear()
    browser.shot("login")
    page.fill("#key", ADMIN_KEY)
    page.click("button[type=submit]")
    page.wait_for_url("**/ui/fleet")
    cookie = next(c for c in page.context.cookies() if c["name"] == "pilothouse_console")
    assert cookie["httpOnly"]
    assert cookie["sameSite"] == "Strict"
    assert cookie["value"] != ADMIN_KEY


def _live_fleet(browser: Browser, base: str, key: str) -> None:
    page = browser.page
    assert page.inner_text("#requests-total") == "0"
    assert "10 " not in page.inner_text("#in-flight")
    headers = {"authorization": f"Bearer {key}"}
    body = {"model": MODEL, "messages": [{"role": "user", "content": "hello"}], "max_tokens": 8}
    with httpx.Client(base_url=base, timeout=30) as client:  # the load script
        for _ in range(LOAD):
            assert client.post("/v1/chat/completions", json=body, headers=headers).is_success
    # The page is not reloaded: its refresh script fetches the new counts.
    wait_for(lambda: int(page.inner_text("#requests-total")) >= LOAD, "the live count", 20)
    assert int(page.inner_text("tr[data-replica] td.routed")) >= LOAD
    browser.shot("fleet")
    browser.open("/ui/routing")
    rows = page.locator("#decisions tbody tr")
    assert rows.count() >= LOAD
    assert "profile" in rows.first.inner_text()
    browser.shot("routing")


def _approve(browser: Browser, stack: Any) -> None:
    page = browser.page
    agent = stack.start_agent("run", "--run-id", "pay1", "pay bob 5 USD", log="agent.log")
    try:
        waiting = wait_for(
            lambda: (r := stack.run("pay1")) and r.status == "waiting_approval" and r,
            "the run to wait for an approval",
        )
        browser.open("/ui/agents/pay1")
        assert page.inner_text("#run-status") == "waiting_approval"
        browser.open("/ui/approvals")
        row = page.locator(f"#pending tr[data-approval='{waiting.pending_approval}']")
        assert "ledger__pay" in row.inner_text()
        row.locator("input[type=text][name=by]").fill("alice")
        browser.shot("approvals")
        row.locator("button.approve").click()
        page.wait_for_url("**/ui/approvals")
        decided = page.locator(f"#decided tr[data-approval='{waiting.pending_approval}']")
        # "used" once the waiting agent has already taken it
        assert decided.locator("td.status").inner_text() in ("approved", "used")
        assert decided.locator("td.by").inner_text() == "alice"
        assert agent.wait(120) == 0, (stack.tmp / "agent.log").read_text()
    finally:
        if agent.poll() is None:
            agent.kill()
    run = stack.run("pay1")
    assert run is not None
    assert run.status == "completed"
    assert [c["tool"] for c in stack.tool_calls()] == ["balance", "pay"]
    browser.open("/ui/agents")
    assert page.locator("tr[data-run='pay1'] td.status").inner_text() == "completed"
    browser.shot("agents")
    browser.open("/ui/agents/pay1")
    assert page.locator("#steps tbody tr").count() == 6
    browser.shot("agent-run")


def _spend(browser: Browser, store_url: str, key_id: str) -> None:
    def ledger() -> Any:
        store = SqlStore(store_url)
        try:
            rows = {row.group[0]: row for row in store.usage(["key"])}
        finally:
            store.close()
        row = rows.get(key_id)
        return row if row is not None and row.requests == LOAD else None

    row = wait_for(ledger, "the load script's requests in the ledger", timeout_s=30)
    assert row.cost > 0
    page = browser.page
    browser.open("/ui/tenants")
    shown = page.locator(f"#tenants tr[data-id='{key_id}']")
    assert float(shown.locator("td.cost").get_attribute("data-cost")) == row.cost
    assert int(shown.locator("td.requests").inner_text()) == row.requests
    assert int(shown.locator("td.tokens").inner_text()) == row.prompt_tokens + row.completion_tokens
    browser.shot("tenants")


def _the_rest(browser: Browser) -> None:
    page = browser.page
    browser.open("/ui/audit")
    assert page.locator("#audit tbody tr").count() > 1
    page.click("#verify")
    page.wait_for_selector("#verdict")
    assert page.inner_text("#verdict").startswith("Intact")
    browser.shot("audit")
    browser.open("/ui/reports")
    report = page.locator("section[data-report='b2b-saas']")
    assert "prefix-load" in report.inner_text()
    images = report.locator("img")
    assert images.count() == 3
    for i in range(images.count()):  # every plot loaded and decoded
        assert images.nth(i).evaluate("img => img.complete && img.naturalWidth > 0")
    browser.shot("reports")


UP_FLEET = """
models:
  - name: cold
    engine: sim
    args: {startup-delay: 0.5, time-scale: 10, default-max-tokens: 8}
    autoscaling: {min_replicas: 0, max_replicas: 2, target: 32, window_s: 1, interval_s: 0.25,
                  idle_timeout_s: 600}
gateway:
  port: 0
  probe_interval_s: 0.1
  access_log: false
  admin: {api_key: %s}
local: {reconcile_interval_s: 0.1, stop_grace_s: 2}
"""


def test_browser_console_under_up_shows_the_control_plane(tmp_path: Path) -> None:
    """``pilothouse up`` with a model at zero: the fleet page shows the autoscaler's decision
    to start a replica, and every page loads without errors (those needing governance say
    how to enable it)."""
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian's chromium is not installed (make services installs it)")
    from tests.e2e.procs import children, kill_quietly, start_until_ready, stop

    spec = tmp_path / "fleet.yaml"
    spec.write_text(UP_FLEET % ADMIN_KEY)
    args = ["up", "-f", str(spec), "--log-dir", str(tmp_path / "logs")]
    proc, url = start_until_ready(args, tmp_path / "up.log", timeout_s=60)
    base = url.removesuffix("/v1")
    try:
        with playwright_api.sync_playwright() as p:
            chromium = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            try:
                page = chromium.new_page(viewport={"width": 1400, "height": 900})
                browser = Browser(page, base, None)
                browser.open("/ui/login")
                page.fill("#key", ADMIN_KEY)
                page.click("button[type=submit]")
                page.wait_for_url("**/ui/fleet")
                assert "No replicas yet" in page.inner_text("#live")
                body = {"model": "cold", "messages": [{"role": "user", "content": "hi"}]}
                reply = httpx.post(base + "/v1/chat/completions", json=body, timeout=60)
                assert reply.is_success
                # The page refreshes itself: the autoscaler's 0 → 1 and the new replica.
                wait_for(lambda: "0 → 1" in _scaling(page), "the scale-up on the page", 20)
                wait_for(lambda: page.locator("tr[data-replica]").count() == 1, "the replica")
                for name in ("routing", "tenants", "agents", "approvals", "audit", "reports"):
                    browser.open(f"/ui/{name}")
                    if name != "routing":
                        assert "Not enabled" in page.inner_text("main"), name
                assert browser.errors == []
            finally:
                chromium.close()
    finally:
        stop(proc, timeout_s=10)
        for pid in children(proc.pid):
            kill_quietly(pid)


def _scaling(page: Any) -> str:
    rows = page.locator("#scaling tbody tr")
    changes = []
    for i in range(rows.count()):
        row = rows.nth(i)
        changes.append(
            f"{row.locator('td.from').inner_text()} → {row.locator('td.to').inner_text()}"
        )
    return " ".join(changes)
