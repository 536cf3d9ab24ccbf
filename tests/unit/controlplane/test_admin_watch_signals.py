"""The admin endpoint, the file-change detector and the gateway signals."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram
from starlette.applications import Starlette
from starlette.testclient import TestClient

from pilothouse.clock import SystemClock
from pilothouse.config.fleet import FleetSpec, GatewaySpec
from pilothouse.controlplane.apply_client import default_url
from pilothouse.controlplane.changes import ApplyReport
from pilothouse.controlplane.signals import GatewaySignals, quantile_of_delta
from pilothouse.controlplane.watch import ChangeDetector
from pilothouse.endpoints.pool import EndpointPool
from pilothouse.errors import ConfigError
from pilothouse.gateway.admin import admin_routes, is_loopback
from pilothouse.gateway.context import GatewayContext
from pilothouse.gateway.metrics import GatewayMetrics
from pilothouse.scheduling import build_scheduler, builtin_config
from pilothouse.scheduling.types import Endpoint, EndpointMetrics

SPEC = {"models": [{"name": "m", "engine": "sim"}]}


def admin(api_key: str | None = None, **gateway: Any) -> tuple[Starlette, list[FleetSpec]]:
    settings = GatewaySpec(api_key=api_key, **gateway)
    ctx = GatewayContext(
        settings=settings,
        pool=EndpointPool(),
        scheduler=build_scheduler(builtin_config("random"), SystemClock()),
        metrics=GatewayMetrics(),
        clock=SystemClock(),
    )
    applied: list[FleetSpec] = []

    def apply(spec: FleetSpec) -> ApplyReport:
        applied.append(spec)
        return ApplyReport(("start m-0",), ("a note",))

    return Starlette(routes=admin_routes(ctx, apply, lambda: {"replicas": []})), applied


def client(
    app: Starlette, host: str = "127.0.0.1", base: str = "http://127.0.0.1:8000"
) -> TestClient:
    return TestClient(app, client=(host, 40000), base_url=base)


def test_apply_and_status_over_loopback() -> None:
    app, applied = admin()
    with client(app) as c:
        assert c.get("/admin/fleet").json() == {"replicas": []}
        reply = c.put("/admin/fleet", json=SPEC)
    assert reply.status_code == 200
    assert reply.json() == {"applied": True, "actions": ["start m-0"], "notes": ["a note"]}
    assert [m.name for m in applied[0].models] == ["m"]


@pytest.mark.parametrize("host", ["10.1.2.3", "testclient", "::ffff:10.0.0.1"])
def test_only_loopback_clients_are_answered(host: str) -> None:
    app, applied = admin()
    with client(app, host) as c:
        assert c.put("/admin/fleet", json=SPEC).status_code == 403
        assert c.get("/admin/fleet").status_code == 403
    assert applied == []


def test_the_api_key_is_required_when_set() -> None:
    app, applied = admin(api_key="k")
    with client(app) as c:
        assert c.put("/admin/fleet", json=SPEC).status_code == 401
        headers = {"authorization": "Bearer k"}
        assert c.put("/admin/fleet", json=SPEC, headers=headers).status_code == 200
    assert len(applied) == 1


def test_an_invalid_spec_is_refused_with_every_problem() -> None:
    app, applied = admin()
    bad: dict[str, Any] = {"models": [{"name": "m", "replicas": -1}], "gateway": {"port": -1}}
    with client(app) as c:
        reply = c.put("/admin/fleet", json=bad)
        json_type = {"content-type": "application/json"}
        assert c.put("/admin/fleet", content=b"{not json", headers=json_type).status_code == 400
    assert reply.status_code == 400
    assert [p.split(":")[0] for p in reply.json()["problems"]] == [
        "models[0].replicas",
        "gateway.port",
    ]
    assert applied == []


def test_a_web_pages_simple_request_is_refused() -> None:
    """A text/plain POST or PUT needs no CORS preflight: a page could send it (issue #11)."""
    app, applied = admin()
    raw = orjson.dumps(SPEC)
    with client(app) as c:
        page = {"content-type": "text/plain", "origin": "https://evil.example"}
        assert c.put("/admin/fleet", content=raw, headers=page).status_code == 403
        plain = {"content-type": "text/plain"}
        assert c.put("/admin/fleet", content=raw, headers=plain).status_code == 415
        assert c.get("/admin/fleet", headers={"origin": "https://evil.example"}).status_code == 403
    assert applied == []


def test_dns_rebinding_is_refused_by_the_host_check() -> None:
    app, applied = admin()
    with client(app, base="http://attacker.example:8000") as c:
        reply = c.put("/admin/fleet", json=SPEC)
    assert reply.status_code == 403
    assert "attacker.example" in reply.json()["error"]["message"]
    assert applied == []


@pytest.mark.parametrize("base", ["http://localhost:8000", "http://[::1]:8000", "http://127.0.0.5"])
def test_loopback_host_names_are_this_gateway(base: str) -> None:
    app, _ = admin()
    with client(app, base=base) as c:
        assert c.get("/admin/fleet").status_code == 200


def test_allowed_hosts_and_origins_are_honoured() -> None:
    app, applied = admin(
        admin={"allowed_hosts": ["gw.internal"], "allowed_origins": ["https://console.internal"]}
    )
    with client(app, base="http://gw.internal:8000") as c:
        headers = {"origin": "https://console.internal"}
        assert c.put("/admin/fleet", json=SPEC, headers=headers).status_code == 200
    assert len(applied) == 1


def test_beyond_loopback_the_admin_api_needs_its_credential() -> None:
    app, applied = admin(host="0.0.0.0")
    with client(app) as c:
        reply = c.put("/admin/fleet", json=SPEC)
    assert reply.status_code == 403
    assert "gateway.admin.api_key" in reply.json()["error"]["message"]
    app, applied = admin(host="0.0.0.0", admin={"api_key": "adm"})
    with client(app, host="10.0.0.9") as c:
        assert c.put("/admin/fleet", json=SPEC).status_code == 401
        headers = {"authorization": "Bearer adm"}
        assert c.put("/admin/fleet", json=SPEC, headers=headers).status_code == 200
    assert len(applied) == 1


def test_apply_default_url_comes_from_the_file(tmp_path: Path) -> None:
    path = tmp_path / "f.yaml"
    path.write_text("models: [{name: m}]\ngateway: {host: 0.0.0.0, port: 8123}\n")
    assert default_url(path) == "http://127.0.0.1:8123"
    path.write_text("models: [{name: m}]\ngateway: {port: 0}\n")
    with pytest.raises(ConfigError, match="--url"):
        default_url(path)


def test_change_detector_debounces_and_applies_each_change_once() -> None:
    detector = ChangeDetector((1, 10), debounce_s=0.5)
    timeline = [
        ((1, 10), 0.0, False),  # the spec it started with
        ((2, 10), 1.0, False),  # changed: wait for it to settle
        ((3, 12), 1.2, False),  # still being written
        ((3, 12), 1.5, False),
        ((3, 12), 1.7, True),  # quiet for 0.5 s: apply
        ((3, 12), 5.0, False),  # applied already
        (None, 6.0, False),  # deleted: nothing to apply
        ((3, 12), 7.0, False),
        ((3, 12), 8.0, False),  # back as it was: nothing new
    ]
    assert [detector.observe(s, t) for s, t, _ in timeline] == [e for _, _, e in timeline]


@pytest.mark.parametrize(
    ("before", "after", "q", "expected"),
    [
        ({}, {0.1: 0, 1.0: 10, float("inf"): 10}, 0.5, 0.55),
        ({0.1: 5, 1.0: 5, float("inf"): 5}, {0.1: 5, 1.0: 15, float("inf"): 15}, 0.9, 0.91),
        ({0.1: 5, 1.0: 5, float("inf"): 5}, {0.1: 5, 1.0: 5, float("inf"): 5}, 0.9, None),
        ({}, {0.1: 0, 1.0: 0, float("inf"): 4}, 0.9, 1.0),  # beyond the last bucket
    ],
)
def test_quantile_of_histogram_deltas(
    before: dict[float, float], after: dict[float, float], q: float, expected: float | None
) -> None:
    result = quantile_of_delta(before, after, q)
    assert result == expected if expected is None else result == pytest.approx(expected)


def test_gateway_signals_sample_a_model() -> None:
    registry = CollectorRegistry()
    ttft = Histogram("pilothouse_time_to_first_token_seconds", "", ["model"],
                     buckets=(0.5, 1.0), registry=registry)  # fmt: skip
    requests = Counter("pilothouse_requests", "", ["model"], registry=registry)
    pool = EndpointPool()
    pool.add(Endpoint(name="m-0", address="a:1", model="m"), ready=True)
    pool.add(Endpoint(name="m-1", address="a:2", model="m"), ready=False)
    pool.update_metrics("m-0", EndpointMetrics(kv_cache_usage=0.4, updated_at=1.0))
    pool.acquire("m-0", 10)
    pool.acquire("m-1", 10)
    held = {"m": 0}
    signals = GatewaySignals(pool, held.__getitem__, registry)
    first = signals.sample("m", 10.0)
    assert (first.ready, first.in_flight, first.held, first.kv_cache_usage) == (2 - 1, 2, 0, 0.4)
    assert first.ttft_p90_s is None
    assert signals.last_request("m") == 10.0  # work in flight
    pool.release("m-0", None)
    pool.release("m-1", None)
    for value in (0.2, 0.3, 0.7):
        ttft.labels("m").observe(value)
    requests.labels("m").inc(3)
    second = signals.sample("m", 11.0)
    assert second.ttft_p90_s is not None
    assert 0.5 < second.ttft_p90_s <= 1.0
    assert signals.last_request("m") == 11.0  # requests answered
    assert signals.sample("m", 12.0).ttft_p90_s is None
    assert signals.last_request("m") == 11.0  # nothing since


@pytest.mark.parametrize(
    ("host", "expected"),
    [("127.0.0.1", True), ("127.8.0.1", True), ("::1", True), ("::ffff:127.0.0.1", True),
     ("::ffff:10.0.0.1", False), ("10.0.0.1", False), ("localhost", False), ("", False)],
)  # fmt: skip
def test_loopback_addresses(host: str, expected: bool) -> None:
    assert is_loopback(host) is expected
