"""The simulator server on loopback: OpenAI API, vLLM metrics, KV events over ZMQ, faults."""

from __future__ import annotations

import asyncio
import contextlib
import selectors
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import aiohttp
import msgspec
import orjson
import pytest
import zmq
import zmq.asyncio
from prometheus_client.parser import text_string_to_metric_families

from pilothouse.servers.sim import (
    AllBlocksCleared,
    BlockRemoved,
    BlockStored,
    FaultSettings,
    KVEventSettings,
    SimServer,
    SimSettings,
    decode_event_batch,
)
from pilothouse.servers.sim.runner import READY_PREFIX
from pilothouse.sim import EngineOverrides, chain_block_hashes

pytestmark = pytest.mark.e2e

FAST = SimSettings(port=0, model="sim-model", time_scale=50.0)
SMALL_CACHE = EngineOverrides(num_gpu_blocks=24)  # 24 x 16 = 384 tokens
END = (-1).to_bytes(8, "big", signed=True)


@contextlib.asynccontextmanager
async def serving(settings: SimSettings) -> AsyncIterator[tuple[SimServer, aiohttp.ClientSession]]:
    async with SimServer(settings) as server, aiohttp.ClientSession(server.base_url) as http:
        yield server, http


async def post(http: aiohttp.ClientSession, path: str, body: dict[str, Any]) -> tuple[int, Any]:
    async with http.post(path, json=body) as response:
        return response.status, await response.json(content_type=None)


async def post_raw(http: aiohttp.ClientSession, path: str, data: bytes) -> tuple[int, Any]:
    async with http.post(path, data=data) as response:
        return response.status, await response.json(content_type=None)


async def sse_events(response: aiohttp.ClientResponse) -> list[Any]:
    """Parse ``data:`` events until ``[DONE]`` (kept as the string "[DONE]")."""
    events: list[Any] = []
    async for raw in response.content:
        line = raw.decode().strip()
        if line.startswith("data: "):
            payload = line.removeprefix("data: ")
            events.append(payload if payload == "[DONE]" else orjson.loads(payload))
    return events


def metric_samples(text: str) -> dict[str, list[Any]]:
    samples: dict[str, list[Any]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append(sample)
    return samples


# -- OpenAI API -----------------------------------------------------------------------------


async def test_chat_stream_with_usage() -> None:
    async with serving(FAST) as (_server, http):
        body = {
            "model": "sim-model",
            "messages": [{"role": "user", "content": "Tell me about prefix caches."}],
            "max_tokens": 5,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        async with http.post("/v1/chat/completions", json=body) as response:
            assert response.status == 200
            assert response.headers["Content-Type"].startswith("text/event-stream")
            events = await sse_events(response)
    assert events[-1] == "[DONE]"
    chunks, usage = events[:-2], events[-2]
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    texts = [c["choices"][0]["delta"]["content"] for c in chunks[1:]]
    assert len(texts) == 5
    assert all(text.strip() for text in texts)
    assert [c["choices"][0]["finish_reason"] for c in chunks[1:]] == [None] * 4 + ["length"]
    assert all(c["object"] == "chat.completion.chunk" for c in events[:-1])
    assert len({c["id"] for c in events[:-1]}) == 1
    assert usage["choices"] == []
    assert usage["usage"]["completion_tokens"] == 5
    assert usage["usage"]["total_tokens"] == usage["usage"]["prompt_tokens"] + 5


async def test_completion_stream_without_usage_option() -> None:
    async with serving(FAST) as (_server, http):
        body = {"model": "sim-model", "prompt": "one two three", "max_tokens": 3, "stream": True}
        async with http.post("/v1/completions", json=body) as response:
            events = await sse_events(response)
    assert events[-1] == "[DONE]"
    assert [e["choices"][0]["finish_reason"] for e in events[:-1]] == [None, None, "length"]
    assert all("usage" not in e and e["object"] == "text_completion" for e in events[:-1])


async def test_non_streamed_usage_reports_cached_tokens() -> None:
    prompt = " ".join(f"word{i}" for i in range(120))
    async with serving(FAST) as (_server, http):
        body = {"model": "sim-model", "prompt": prompt, "max_tokens": 4}
        status, first = await post(http, "/v1/completions", body)
        assert status == 200
        _, second = await post(http, "/v1/completions", body)
    assert first["object"] == "text_completion"
    assert first["choices"][0]["finish_reason"] == "length"
    assert first["choices"][0]["text"] == second["choices"][0]["text"]  # deterministic
    assert len(first["choices"][0]["text"].split()) == 4
    usage, again = first["usage"], second["usage"]
    assert usage["prompt_tokens_details"]["cached_tokens"] == 0
    cached = again["prompt_tokens_details"]["cached_tokens"]
    assert cached > 0
    assert cached % 16 == 0
    assert cached < again["prompt_tokens"]


async def test_chat_without_max_tokens_stops_naturally() -> None:
    async with serving(FAST) as (_server, http):
        body = {"model": "sim-model", "messages": [{"role": "user", "content": "hi"}]}
        status, doc = await post(http, "/v1/chat/completions", body)
    assert status == 200
    assert doc["object"] == "chat.completion"
    assert doc["choices"][0]["message"]["role"] == "assistant"
    assert doc["choices"][0]["finish_reason"] == "stop"
    assert 16 <= doc["usage"]["completion_tokens"] <= 128


async def test_prompt_as_token_ids() -> None:
    async with serving(FAST) as (_server, http):
        body = {"model": "sim-model", "prompt": [5, 6, 7, 8, 9], "max_tokens": 2}
        status, doc = await post(http, "/v1/completions", body)
    assert status == 200
    assert doc["usage"]["prompt_tokens"] == 5


async def test_models_and_health() -> None:
    settings = replace(FAST, lora_modules=("adapter-a",))
    async with serving(settings) as (_server, http):
        async with http.get("/health") as response:
            assert response.status == 200
        async with http.get("/v1/models") as response:
            models = await response.json()
    assert [m["id"] for m in models["data"]] == ["sim-model", "adapter-a"]
    assert models["data"][1]["parent"] == "sim-model"


@pytest.mark.parametrize(
    ("path", "body", "status", "param"),
    [
        ("/v1/chat/completions", {"model": "nope", "messages": []}, 404, "model"),
        ("/v1/completions", {"model": "sim-model"}, 400, "prompt"),
        ("/v1/chat/completions", {"model": "sim-model", "messages": "x"}, 400, "messages"),
        ("/v1/completions", {"model": "sim-model", "prompt": "x", "max_tokens": 0}, 400, None),
        ("/v1/completions", {"model": "sim-model", "prompt": "x", "stream": "yes"}, 400, "stream"),
        (
            "/v1/completions",
            {"model": "sim-model", "prompt": "x", "max_tokens": 10**6},
            400,
            "max_tokens",
        ),
    ],
)
async def test_openai_error_bodies(
    path: str, body: dict[str, Any], status: int, param: Any
) -> None:
    async with serving(FAST) as (_server, http):
        got_status, doc = await post(http, path, body)
    assert got_status == status
    assert set(doc["error"]) == {"message", "type", "param", "code"}
    assert doc["error"]["type"] == "invalid_request_error"
    if param is not None:
        assert doc["error"]["param"] == param


async def test_malformed_json_is_400() -> None:
    async with serving(FAST) as (_server, http):
        status, doc = await post_raw(http, "/v1/completions", b"{not json")
    assert status == 400
    assert "not valid JSON" in doc["error"]["message"]


# -- metrics --------------------------------------------------------------------------------


async def test_metrics_use_vllm_names_and_labels() -> None:
    async with serving(FAST) as (_server, http):
        body = {"model": "sim-model", "prompt": "a b c d e f", "max_tokens": 3}
        for _ in range(2):
            await post(http, "/v1/completions", body)
        async with http.get("/metrics") as response:
            assert response.status == 200
            text = await response.text()
    samples = metric_samples(text)
    labels = {"model_name": "sim-model", "engine": "0"}
    for name in (
        "vllm:num_requests_waiting",
        "vllm:num_requests_running",
        "vllm:kv_cache_usage_perc",
        "vllm:prefix_cache_queries_total",
        "vllm:prefix_cache_hits_total",
        "vllm:prompt_tokens_total",
        "vllm:generation_tokens_total",
        "vllm:time_to_first_token_seconds_count",
        "vllm:inter_token_latency_seconds_count",
        "vllm:e2e_request_latency_seconds_count",
    ):
        assert samples[name][0].labels == labels, name
    value = {name: found[0].value for name, found in samples.items()}
    assert value["vllm:generation_tokens_total"] == 6
    assert value["vllm:e2e_request_latency_seconds_count"] == 2
    assert value["vllm:time_to_first_token_seconds_count"] == 2
    assert value["vllm:inter_token_latency_seconds_count"] == 4
    assert value["vllm:num_requests_running"] == value["vllm:num_requests_waiting"] == 0
    success = {s.labels["finished_reason"]: s.value for s in samples["vllm:request_success_total"]}
    assert success == {"stop": 0, "length": 2, "abort": 0}
    (info,) = samples["vllm:cache_config_info"]
    assert info.value == 1
    assert info.labels["block_size"] == "16"
    assert info.labels["num_gpu_blocks"] == "27648"
    assert info.labels["enable_prefix_caching"] == "True"
    assert "# HELP vllm:kv_cache_usage_perc KV-cache usage. 1 means 100 percent usage." in text
    assert "vllm:lora_requests_info" not in samples  # only with LoRA enabled


async def test_lora_info_and_abort_on_disconnect() -> None:
    settings = replace(FAST, time_scale=1.0, lora_modules=("adapter-a",))
    async with serving(settings) as (server, http):
        body = {"model": "adapter-a", "prompt": "x y z", "max_tokens": 5000, "stream": True}
        async with http.post("/v1/completions", json=body) as response:
            await response.content.readline()  # the first token is out: it is running
            async with http.get("/metrics") as metrics:
                samples = metric_samples(await metrics.text())
        newest = max(samples["vllm:lora_requests_info"], key=lambda s: s.value)
        assert newest.labels == {
            "max_lora": "1",
            "running_lora_adapters": "adapter-a",
            "waiting_lora_adapters": "",
        }
        for _ in range(200):  # the disconnect aborts the request in the engine
            if server.state.model.num_running == 0:
                break
            await asyncio.sleep(0.01)
        assert server.state.model.num_running == 0
        assert server.state.model.stats.finished == {"abort": 1}


# -- KV events ------------------------------------------------------------------------------


def kv_settings(layout: str = "array") -> SimSettings:
    return replace(
        FAST,
        overrides=SMALL_CACHE,
        kv_events=KVEventSettings(port=0, replay_port=0, encoding=layout),
    )


async def recv_batch(sub: zmq.asyncio.Socket, wait_s: float = 2.0) -> list[bytes] | None:
    try:
        return await asyncio.wait_for(sub.recv_multipart(), wait_s)
    except TimeoutError:
        return None


def token_prompt(seed: int, length: int = 100) -> list[int]:
    return [1000 + seed * 1000 + i for i in range(length)]


async def test_kv_events_match_vllm_wire_format_and_replay_fills_gaps() -> None:
    ctx = zmq.asyncio.Context()
    sub = ctx.socket(zmq.SUB)
    dealer = ctx.socket(zmq.DEALER)
    try:
        async with serving(kv_settings()) as (server, http):
            assert server.kv_endpoint is not None
            assert server.kv_replay_endpoint is not None
            assert server.kv_topic is not None
            assert server.kv_topic == f"kv@127.0.0.1:{server.port}@sim-model"
            # 1. A request nobody hears about: its batch (seq 0) is lost to us.
            first = token_prompt(0)
            await post(http, "/v1/completions", {"model": "sim-model", "prompt": first})
            # 2. Subscribe late; keep sending distinct prompts until a batch arrives.
            sub.setsockopt(zmq.SUBSCRIBE, server.kv_topic.encode())
            sub.connect(server.kv_endpoint)
            frames = None
            for attempt in range(1, 30):
                body = {"model": "sim-model", "prompt": token_prompt(attempt), "max_tokens": 1}
                await post(http, "/v1/completions", body)
                frames = await recv_batch(sub, 1.0)
                if frames is not None:
                    break
            assert frames is not None
            topic, seq_bytes, payload = frames
            assert topic == server.kv_topic.encode()
            assert len(seq_bytes) == 8
            seen = int.from_bytes(seq_bytes, "big")
            assert seen > 0  # a gap: everything before it was missed
            # 3. Recover the gap through the replay socket.
            dealer.connect(server.kv_replay_endpoint)
            await dealer.send_multipart([b"", (0).to_bytes(8, "big")])
            replayed: dict[int, bytes] = {}
            for _ in range(1000):
                empty, seq_frame, data = await asyncio.wait_for(dealer.recv_multipart(), 5.0)
                assert empty == b""
                if seq_frame == END:
                    assert data == b""
                    break
                replayed[int.from_bytes(seq_frame, "big")] = data
            assert set(range(seen + 1)) <= set(replayed)
            assert replayed[seen] == payload
    finally:
        sub.close(linger=0)
        dealer.close(linger=0)
        ctx.term()
    # The lost batch, decoded as raw msgpack (independently of our structs) ...
    ts, events, rank = msgspec.msgpack.decode(replayed[0])
    assert isinstance(ts, float)
    assert rank == 0
    (stored,) = events
    hashes = chain_block_hashes(first, 16)  # 6 full blocks of the 100-token prompt
    assert stored == [
        "BlockStored", list(hashes), None, first[:96], 16, None, "GPU", None,
        None, None, None, None,
    ]  # fmt: skip
    # ... and through the shared decoder.
    batch = decode_event_batch(replayed[0])
    assert batch.events == [BlockStored(list(hashes), None, first[:96], 16, None, "GPU", None)]


async def _replay_all(dealer: zmq.asyncio.Socket) -> list[bytes]:
    """Every buffered batch from sequence 0, in order (the publisher's replay socket)."""
    await dealer.send_multipart([b"", (0).to_bytes(8, "big")])
    batches: list[bytes] = []
    for _ in range(1000):
        _empty, seq_frame, data = await asyncio.wait_for(dealer.recv_multipart(), 5.0)
        if seq_frame == END:
            return batches
        batches.append(data)
    raise AssertionError("the replay never ended")


async def test_eviction_and_reset_events() -> None:
    ctx = zmq.asyncio.Context()
    sub = ctx.socket(zmq.SUB)
    dealer = ctx.socket(zmq.DEALER)
    cleared = 0
    try:
        async with serving(kv_settings()) as (server, http):
            assert server.kv_endpoint is not None
            assert server.kv_replay_endpoint is not None
            sub.setsockopt(zmq.SUBSCRIBE, b"")
            sub.connect(server.kv_endpoint)
            for attempt in range(12):  # 6 blocks each: the 24-block cache overflows
                body = {"model": "sim-model", "prompt": token_prompt(attempt), "max_tokens": 2}
                await post(http, "/v1/completions", body)
            async with http.post("/reset_prefix_cache") as response:
                assert response.status == 200
            # The live feed delivers the reset (earlier batches may still be queued: bounded).
            for _ in range(200):
                frames = await recv_batch(sub, 1.0)
                if frames is not None and decode_event_batch(frames[2]).events == [
                    AllBlocksCleared()
                ]:
                    cleared += 1
                    assert msgspec.msgpack.decode(frames[2])[1] == [["AllBlocksCleared"]]
                    break
            # The whole history, without the live feed's slow-joiner loss: replay from 0.
            dealer.connect(server.kv_replay_endpoint)
            history = await _replay_all(dealer)
    finally:
        sub.close(linger=0)
        dealer.close(linger=0)
        ctx.term()
    stored: list[int] = []
    removed: list[int] = []
    for payload in history:
        for event in decode_event_batch(payload).events:
            if isinstance(event, BlockStored):
                stored.extend(int(h) for h in event.block_hashes)
            elif isinstance(event, BlockRemoved):
                removed.extend(int(h) for h in event.block_hashes)
    assert cleared == 1
    assert removed
    assert set(removed) <= set(stored)
    assert stored[:6] == list(chain_block_hashes(token_prompt(0), 16))  # the first prompt
    assert removed[0] == stored[5]  # evicted tail first, oldest prompt first
    assert decode_event_batch(history[-1]).events == [AllBlocksCleared()]


async def test_map_layout_events_decode() -> None:
    ctx = zmq.asyncio.Context()
    sub = ctx.socket(zmq.SUB)
    try:
        async with serving(kv_settings("map")) as (server, http):
            assert server.kv_endpoint is not None
            sub.setsockopt(zmq.SUBSCRIBE, b"")
            sub.connect(server.kv_endpoint)
            frames = None
            for attempt in range(30):
                body = {"model": "sim-model", "prompt": token_prompt(attempt), "max_tokens": 1}
                await post(http, "/v1/completions", body)
                frames = await recv_batch(sub, 1.0)
                if frames is not None:
                    break
    finally:
        sub.close(linger=0)
        ctx.term()
    assert frames is not None
    raw = msgspec.msgpack.decode(frames[2])
    assert set(raw) == {"ts", "events", "data_parallel_rank"}
    assert raw["events"][0]["type"] == "BlockStored"
    assert raw["events"][0]["medium"] == "GPU"
    (event,) = decode_event_batch(frames[2]).events
    assert isinstance(event, BlockStored)
    assert event.block_size == 16


# -- faults ---------------------------------------------------------------------------------


async def test_error_rate_answers_500() -> None:
    settings = replace(FAST, faults=FaultSettings(error_rate=1.0))
    async with serving(settings) as (_server, http):
        body = {"model": "sim-model", "prompt": "x", "max_tokens": 1}
        status, doc = await post(http, "/v1/completions", body)
    assert status == 500
    assert doc["error"]["type"] == "server_error"


async def test_hang_rate_never_answers() -> None:
    settings = replace(FAST, faults=FaultSettings(hang_rate=1.0))
    async with serving(settings) as (_server, http):
        body = {"model": "sim-model", "prompt": "x", "max_tokens": 1}
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(post(http, "/v1/completions", body), 0.5)


async def test_startup_delay_holds_health_and_requests() -> None:
    settings = replace(FAST, faults=FaultSettings(startup_delay_s=0.3))
    async with serving(settings) as (_server, http):
        async with http.get("/health") as response:
            assert response.status == 503
        body = {"model": "sim-model", "prompt": "x", "max_tokens": 1}
        status, _doc = await post(http, "/v1/completions", body)
        assert status == 503
        for _ in range(300):
            async with http.get("/health") as response:
                if response.status == 200:
                    break
            await asyncio.sleep(0.01)
        status, _doc = await post(http, "/v1/completions", body)
        assert status == 200


async def test_crash_after_stops_serving_in_process() -> None:
    settings = replace(FAST, faults=FaultSettings(crash_after=2))
    body = {"model": "sim-model", "prompt": "x", "max_tokens": 1}
    async with serving(settings) as (server, http):
        for _ in range(2):
            status, _doc = await post(http, "/v1/completions", body)
            assert status == 200
        for _ in range(200):
            if server.crashed:
                break
            await asyncio.sleep(0.01)
        assert server.crashed
        with pytest.raises(aiohttp.ClientConnectionError):
            await post_until_refused(http, body)


async def post_until_refused(http: aiohttp.ClientSession, body: dict[str, Any]) -> None:
    for _ in range(200):
        await post(http, "/v1/completions", body)
        await asyncio.sleep(0.01)


def test_crash_after_exits_the_process() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "pilothouse.servers.sim", "--port", "0", "--crash-after", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        with selectors.DefaultSelector() as selector:
            selector.register(proc.stdout, selectors.EVENT_READ)
            assert selector.select(timeout=60), "the simulator did not start"
        line = proc.stdout.readline()
        assert line.startswith(READY_PREFIX)
        url = line.removeprefix(READY_PREFIX).strip()
        asyncio.run(_one_request(url))
        assert proc.wait(timeout=30) == 1
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


async def _one_request(url: str) -> None:
    async with aiohttp.ClientSession(url) as http:
        status, _doc = await post(http, "/v1/completions", {"model": "sim-model", "prompt": "x"})
    assert status == 200


def test_help_lists_the_options() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pilothouse.servers.sim", "--help"],
        capture_output=True,
        text=True,
        check=True,
    )
    for option in ("--preset", "--kv-events-port", "--kv-replay-port", "--time-scale",
                   "--error-rate", "--hang-rate", "--startup-delay", "--crash-after"):  # fmt: skip
        assert option in result.stdout
