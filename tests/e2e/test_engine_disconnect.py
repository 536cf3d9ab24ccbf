"""Our engine servers stop the work of a client that hung up, streamed or not (issue #10).

Each test runs an engine as a real process on loopback, starts a request far too long to
finish during the test, closes the client's connection and watches the engine's own
counters: the request must leave the engine (its running count drops, its slot frees) and
generation must stop well short of ``max_tokens``.

The acceptance says "within 1 s". A wall-clock assertion that tight would be flaky on a
shared CI machine, so the tests wait with a generous bound (:data:`FREED_WITHIN_S`) that is
still far below the time the request would take if it ran to the end (minutes), which is
what tells "aborted" from "finished". The measured delay is printed (``pytest -s``).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.engine_procs import engine_process, eventually, free_port, open_request, sim_url

pytestmark = pytest.mark.e2e

FREED_WITHIN_S = 15.0
"""Generous bound for "frees its slot within 1 s"; see the module docstring."""

SIM_MAX_TOKENS = 2500
# At --time-scale 0.1 the default preset decodes ~16 tokens/s: 2,500 tokens take minutes.
SIM_ARGS = ["sim", "--port", "0", "--model", "sim-model", "--time-scale", "0.1"]


async def sim_metrics(http: aiohttp.ClientSession) -> dict[str, float]:
    """Our sim's /metrics as ``{name or name{finished_reason=...}: value}``."""
    async with http.get("/metrics") as reply:
        text = await reply.text()
    values: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            reason = sample.labels.get("finished_reason")
            key = sample.name if reason is None else f"{sample.name}{{{reason}}}"
            values[key] = sample.value
    return values


@pytest.mark.parametrize("stream", [True, False], ids=["streamed", "non-streamed"])
async def test_sim_aborts_the_request_of_a_client_that_left(tmp_path: Path, stream: bool) -> None:
    with engine_process(SIM_ARGS, tmp_path / "sim.log") as proc:
        url = sim_url(proc)
        async with aiohttp.ClientSession(url) as http:
            body = {"model": "sim-model", "prompt": "tell me everything", "stream": stream}
            client = await open_request(
                url, "/v1/completions", {**body, "max_tokens": SIM_MAX_TOKENS}
            )
            if stream:
                await client.read_until(b"data: ")  # the first chunk is out
            running = await eventually(
                lambda: sim_metrics(http),
                lambda m: (
                    m["vllm:num_requests_running"] == 1 and m["vllm:generation_tokens_total"] > 0
                ),
                "the request generating",
            )
            assert running["vllm:request_success_total{abort}"] == 0
            await client.hang_up()
            hung_up = time.monotonic()
            after = await eventually(
                lambda: sim_metrics(http),
                lambda m: m["vllm:num_requests_running"] == 0,
                "the running count after the client left",
                timeout_s=FREED_WITHIN_S,
            )
            print(f"sim ({'streamed' if stream else 'non-streamed'}) freed the slot "
                  f"{time.monotonic() - hung_up:.3f}s after the client left")  # fmt: skip
            settled = await sim_metrics(http)
    assert after["vllm:request_success_total{abort}"] == 1
    assert after["vllm:request_success_total{length}"] == 0
    assert after["vllm:num_requests_waiting"] == 0
    assert after["vllm:kv_cache_usage_perc"] == 0  # its KV blocks are free
    generated = settled["vllm:generation_tokens_total"]
    assert generated == after["vllm:generation_tokens_total"]  # nothing more after the abort
    assert generated < SIM_MAX_TOKENS / 10


async def test_sim_drops_a_queued_request_whose_client_left(tmp_path: Path) -> None:
    args = [*SIM_ARGS, "--max-num-seqs", "1"]  # one running request; the next one queues
    with engine_process(args, tmp_path / "sim.log") as proc:
        url = sim_url(proc)
        async with aiohttp.ClientSession(url) as http:
            body = {"model": "sim-model", "prompt": "tell me everything", "max_tokens": 2500}
            running = await open_request(url, "/v1/completions", body)
            queued = await open_request(url, "/v1/completions", body)
            await eventually(
                lambda: sim_metrics(http),
                lambda m: m["vllm:num_requests_running"] == m["vllm:num_requests_waiting"] == 1,
                "one request running, one queued",
            )
            await queued.hang_up()
            after = await eventually(
                lambda: sim_metrics(http),
                lambda m: m["vllm:num_requests_waiting"] == 0,
                "the queue after the client left",
                timeout_s=FREED_WITHIN_S,
            )
            await running.hang_up()
    assert after["vllm:request_success_total{abort}"] == 1
    assert after["vllm:num_requests_running"] == 1  # the other client's request runs on


# -- llama.cpp (embedded model) -------------------------------------------------------------

LLAMA_MAX_TOKENS = 2000
# At temperature 0 SmolLM2 counts on to max_tokens here (finish_reason "length"): left
# alone, this request samples all 2,000 tokens (minutes on a CPU).
COUNTING = {"prompt": "1, 2, 3, 4, 5, 6, 7, 8, 9, 10,", "temperature": 0}


async def llama_health(http: aiohttp.ClientSession) -> dict[str, Any]:
    try:
        async with http.get("/health") as reply:
            return dict(await reply.json()) if reply.status == 200 else {}
    except aiohttp.ClientConnectionError:
        return {}  # not listening yet


async def llama_chat(http: aiohttp.ClientSession, max_tokens: int) -> int:
    """A short chat completion; its completion tokens."""
    body = {"messages": [{"role": "user", "content": "Name a colour."}], "max_tokens": max_tokens}
    async with http.post("/v1/chat/completions", json=body) as reply:
        assert reply.status == 200
        return int((await reply.json())["usage"]["completion_tokens"])


@pytest.mark.embedded
@pytest.mark.parametrize("stream", [True, False], ids=["streamed", "non-streamed"])
async def test_llamacpp_stops_generating_for_a_client_that_left(
    tmp_path: Path, stream: bool
) -> None:
    pytest.importorskip("llama_cpp", reason="needs the 'embedded' extra (llama-cpp-python)")
    port = free_port()
    args = ["llamacpp", "--port", str(port), "--threads", "2"]
    with engine_process(args, tmp_path / "llama.log"):
        url = f"http://127.0.0.1:{port}"
        async with aiohttp.ClientSession(url) as http:
            await eventually(lambda: llama_health(http), bool, "llama.cpp up", timeout_s=120)
            await llama_chat(http, 1)  # warm-up: llama.cpp's first call is slow
            before = await llama_health(http)
            body = {**COUNTING, "stream": stream, "max_tokens": LLAMA_MAX_TOKENS}
            client = await open_request(url, "/v1/completions", body)
            if stream:
                await client.read_until(b"data: ")  # the first chunk is out
            else:
                await eventually(lambda: llama_health(http), lambda h: h["running"] == 1, "busy")
            await client.hang_up()
            hung_up = time.monotonic()
            after = await eventually(
                lambda: llama_health(http),
                lambda h: h["running"] == 0,
                "the runner after the client left",
                timeout_s=FREED_WITHIN_S,
            )
            print(f"llama.cpp ({'streamed' if stream else 'non-streamed'}) freed the model "
                  f"{time.monotonic() - hung_up:.3f}s after the client left: {after}")  # fmt: skip
            assert await llama_chat(http, 4) > 0  # the next request gets the model
    assert after["cancelled"] == before["cancelled"] + 1
    sampled = after["sampled_tokens"] - before["sampled_tokens"]
    assert 0 < sampled < LLAMA_MAX_TOKENS / 4
