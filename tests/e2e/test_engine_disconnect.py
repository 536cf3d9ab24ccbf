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

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.engine_procs import engine_process, eventually, open_request, sim_url

pytestmark = pytest.mark.e2e

FREED_WITHIN_S = 10.0
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
