"""`bench overhead --governance [--redis]`: the options' plumbing, the verdicts and the JSON.

Numbers are printed, never judged against the wall clock: these tests check what is measured
and how it is judged, not how fast this machine is.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from click.testing import CliRunner
from rich.console import Console

from pilothouse.bench.cli import bench
from pilothouse.bench.loadgen import LoadSpec, run_load
from pilothouse.bench.overhead.cli import render_governance_table
from pilothouse.bench.overhead.governance import (
    GOVERNED,
    GOVERNED_REDIS,
    RATIO_LIMIT,
    create_tenant,
    governance_block,
    judge_governance,
    redis_lines,
)
from pilothouse.bench.overhead.results import LevelResult, OverheadReport, TargetStats
from pilothouse.bench.overhead.run import OverheadConfig, _meters, _schedule
from pilothouse.bench.overhead.services import fleet_yaml
from pilothouse.config.fleet import parse_fleet
from pilothouse.governance.keys import digest
from pilothouse.governance.store import DB_FILE, SqlStore


def _stats(cpu: dict[str, float], errors: int = 0) -> TargetStats:
    return TargetStats(
        requests=100, errors=errors, window_s=1.0, rps=100.0, p50_ms=1.0, p90_ms=2.0,
        p99_ms=3.0, mean_ms=1.0, max_ms=4.0, cpu_ms_per_request=cpu, other_load_cores=0.0,
        first_error=None,
    )  # fmt: skip


def _level(
    stream: bool, conc: int, gateway: float, governed: float, redis: float | None = None
) -> LevelResult:
    return LevelResult(
        stream=stream,
        concurrency=conc,
        direct=_stats({}),
        gateway=_stats({"gateway": gateway}),
        governed=_stats({GOVERNED: governed}),
        governed_redis=None if redis is None else _stats({GOVERNED_REDIS: redis, "redis": 0.05}),
    )


@pytest.mark.parametrize(
    ("governed", "passed"),
    [(0.25, True), (0.2 * RATIO_LIMIT, True), (0.2 * RATIO_LIMIT + 0.001, False), (0.5, False)],
)
def test_governed_cpu_is_judged_against_1_25x_the_plain_gateway(
    governed: float, passed: bool
) -> None:
    verdicts = judge_governance([_level(False, 16, 0.2, 0.21), _level(False, 64, 0.2, governed)])
    assert [v.name for v in verdicts] == [
        "governed/gateway CPU per request",
        "failed governed requests",
    ]
    ratio = verdicts[0]
    assert ratio.passed is passed
    assert ratio.value == pytest.approx(max(governed, 0.21) / 0.2)  # the worst level counts
    assert ratio.limit == RATIO_LIMIT


def test_each_mode_gets_its_verdict_and_redis_is_reported_not_judged() -> None:
    levels = [_level(False, 16, 0.2, 0.22, redis=2.0), _level(True, 16, 0.3, 0.33, redis=3.0)]
    verdicts = judge_governance(levels)
    assert [(v.name, v.passed) for v in verdicts] == [
        ("governed/gateway CPU per request", True),
        ("governed/gateway CPU per streamed request", True),
        ("failed governed requests", True),
    ]  # a governed-redis 10x the gateway fails nothing
    lines = redis_lines(levels)
    assert len(lines) == 2
    assert "10.000x" in lines[0]
    assert "redis-server 0.050 ms" in lines[0]
    assert "reported, not judged" in lines[1]


def test_failed_governed_requests_fail_and_no_governance_no_verdicts() -> None:
    level = _level(False, 16, 0.2, 0.2)
    broken = LevelResult(
        False, 16, level.direct, level.gateway, governed=_stats({GOVERNED: 0.2}, errors=3)
    )
    failed = judge_governance([broken])[-1]
    assert (failed.name, failed.value, failed.passed) == ("failed governed requests", 3, False)
    assert judge_governance([LevelResult(False, 16, level.direct, level.gateway)]) == []
    assert redis_lines([level]) == []


def test_json_puts_governed_targets_beside_the_gateway_with_their_ratios() -> None:
    doc = _level(True, 64, 0.2, 0.24, redis=0.5).to_json()
    assert set(doc["governed"]) == set(doc["gateway"])  # type: ignore[arg-type]
    assert doc["governed_cpu_ms_per_request"] == 0.24
    assert doc["governed_ratio"] == pytest.approx(1.2)
    assert doc["governance_cpu_ms_per_request"] == pytest.approx(0.04)  # 0.24 - 0.2
    assert doc["governed_redis_ratio"] == pytest.approx(2.5)
    assert doc["redis_server_cpu_ms_per_request"] == 0.05
    plain = LevelResult(True, 64, _stats({}), _stats({"gateway": 0.2})).to_json()
    assert not any(key.startswith("governed") for key in plain)


def test_the_table_shows_what_governance_adds_per_request_beside_the_ratio() -> None:
    config = OverheadConfig(concurrency=(64,), streams=(False,), governance=True)
    report = OverheadReport(config, {}, [_level(False, 64, 0.2, 0.24)], [])
    table = render_governance_table(report)
    assert table is not None
    console = Console(width=200, record=True)
    console.print(table)
    text = console.export_text()
    assert "governance ms/req" in text
    assert "+0.040" in text
    assert "1.200x" in text


def test_targets_are_interleaved_and_flip_every_round() -> None:
    config = OverheadConfig(concurrency=(16,), streams=(False,), rounds=2, governance=True)
    assert config.targets == ("direct", "gateway", GOVERNED)
    redis = OverheadConfig(governance=True, redis=True, peer="vllm-router")
    assert redis.targets == ("direct", "gateway", GOVERNED, GOVERNED_REDIS, "peer")
    assert OverheadConfig(redis=True).targets == ("direct", "gateway")  # needs governance
    orders = [order for _, order in _schedule(config)]
    assert orders == [("direct", "gateway", GOVERNED), (GOVERNED, "gateway", "direct")]


def test_every_gateway_and_the_redis_server_are_metered_as_ours() -> None:
    pids = {"gateway": 1, GOVERNED: 2, GOVERNED_REDIS: 3, "redis": 4, "upstream": 5}
    meters = _meters(pids)
    assert set(meters) == {
        "gateway", "gateway_system", GOVERNED, f"{GOVERNED}_system", GOVERNED_REDIS,
        f"{GOVERNED_REDIS}_system", "redis", "upstream", "client", "machine",
    }  # fmt: skip


def test_tenant_key_is_stored_with_limits_and_budgets_that_never_refuse(tmp_path: Path) -> None:
    key = create_tenant(tmp_path / "state")
    store = SqlStore(f"sqlite:///{tmp_path / 'state' / DB_FILE}")
    try:
        snapshot = store.snapshot()
    finally:
        store.close()
    (record,) = snapshot.keys
    assert record.digest == digest(key)
    limit = record.quota.limit
    assert None not in (limit.requests_per_min, limit.tokens_per_min, limit.concurrent)
    assert min(limit.requests_per_min or 0, limit.concurrent or 0) >= 10**9
    (team,) = snapshot.teams
    (org,) = snapshot.orgs
    assert (team.quota.budget_tokens or 0) >= 1e12
    assert (org.quota.budget_cost or 0) >= 1e12


@pytest.mark.parametrize("redis_url", [None, "redis://127.0.0.1:6399/0"])
def test_governed_fleet_is_a_valid_spec_with_a_price_and_the_ledger_on(
    tmp_path: Path, redis_url: str | None
) -> None:
    block = governance_block(tmp_path, redis_url)
    fleet = parse_fleet(json.loads(json.dumps(_yaml_doc("http://127.0.0.1:1", block))))
    governance = fleet.gateway.governance
    assert governance is not None
    assert governance.state_dir == tmp_path
    assert governance.redis == redis_url
    assert governance.mode == "enforce"
    assert governance.require_key
    (price,) = governance.prices.values()
    assert price.prompt_per_million > 0
    assert price.completion_per_million > 0


def _yaml_doc(upstream: str, block: dict[str, object]) -> dict[str, object]:
    import yaml

    doc: dict[str, object] = yaml.safe_load(fleet_yaml(upstream, "default", block))
    return doc


@pytest.fixture
async def echo_url() -> AsyncIterator[str]:
    """A server that answers 200 only to requests carrying the bench's key."""

    async def handle(request: web.Request) -> web.Response:
        ok = request.headers.get("Authorization") == "Bearer ph-test"
        return web.Response(status=200 if ok else 401, body=b"{}")

    app = web.Application()
    app.router.add_post("/v1/chat/completions", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        yield f"http://{host}:{port}/v1/chat/completions"
    finally:
        await runner.cleanup()


async def test_load_spec_headers_reach_every_request(echo_url: str) -> None:
    spec = LoadSpec(
        url=echo_url, body=b"{}", stream=False, concurrency=2, warmup_s=0, requests=10,
        headers={"Authorization": "Bearer ph-test"},
    )  # fmt: skip
    keyed = await run_load(spec, {})
    assert (keyed.completed, keyed.errors) == (10, 0)
    bare = await run_load(LoadSpec(echo_url, b"{}", False, 1, 0, requests=3), {})
    assert bare.errors >= 3
    assert "401" in (bare.first_error or "")


def test_redis_without_governance_is_a_usage_error_and_help_documents_both() -> None:
    runner = CliRunner()
    refused = runner.invoke(bench, ["overhead", "--redis"])
    assert refused.exit_code == 2
    assert "--governance" in refused.output
    help_text = runner.invoke(bench, ["overhead", "--help"]).output
    assert "--governance" in help_text
    assert "--redis" in help_text
    assert "1.25x" in help_text


@pytest.mark.parametrize("redis", [False, True], ids=["in-process", "redis"])
def test_governance_ledger_overhead_command_runs_end_to_end_at_tiny_scale(
    tmp_path: Path, redis: bool
) -> None:
    installed = shutil.which("redis-server") or Path("/usr/bin/redis-server").exists()
    if redis and not installed:
        pytest.skip("redis-server is not installed")
    out = tmp_path / "overhead.json"
    args = ["overhead", "--governance", "-c", "2", "--mode", "plain", "--warmup", "0.2"]
    args += ["--requests", "60", "--retries", "0", "--json", str(out)]
    args += ["--redis"] if redis else []
    result = CliRunner().invoke(bench, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "governance overhead" in result.output
    doc = json.loads(out.read_text())
    print({k: v for k, v in doc["levels"][0].items() if "ratio" in k or "cpu_ms" in k})
    assert doc["config"]["governance"] is True
    assert doc["config"]["redis"] is redis
    (level,) = doc["levels"]
    governed = [GOVERNED, GOVERNED_REDIS] if redis else [GOVERNED]
    for target in governed:
        stats = level[target.replace("-", "_")]
        assert (stats["requests"], stats["errors"]) == (60, 0), stats["first_error"]
        assert stats["cpu_ms_per_request"][target] > 0
        # Every counted request went through the ledger (warm-up requests come on top).
        assert doc["ledger_requests"][target] >= 60
    assert level["governed_ratio"] > 0
    assert ("redis_server_cpu_ms_per_request" in level) is redis
    names = {v["name"] for v in doc["verdicts"]}
    assert {"governed/gateway CPU per request", "failed governed requests"} <= names
    failed = next(v for v in doc["verdicts"] if v["name"] == "failed governed requests")
    assert failed["passed"] is True
