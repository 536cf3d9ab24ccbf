"""Streamed requests against a real simulator server (in process): timing, usage, errors."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import orjson
import pytest

from pilothouse.bench.live.client import _StreamState, request_body, request_headers, run_request
from pilothouse.bench.workloads import ArrivalSpec, build_workload
from pilothouse.servers.sim import SimServer, SimSettings
from pilothouse.sim.cluster_types import SimRequest

OVERRIDES = {
    "groups": "1",
    "system_prompt_tokens": "64",
    "question_tokens": "16",
    "output_tokens": "5",
}


@pytest.fixture
async def engine() -> AsyncIterator[str]:
    async with SimServer(SimSettings(port=0, time_scale=50.0)) as server:
        yield server.base_url


def workload_requests(count: int) -> list[SimRequest]:
    workload = build_workload("b2b-saas", block_size=16, overrides=OVERRIDES)
    return list(workload.requests(10.0, count, ArrivalSpec()))


def test_body_asks_for_the_exact_output_length_streamed() -> None:
    request = workload_requests(1)[0]
    body = orjson.loads(request_body(request, "m", "completions"))
    assert body["prompt"] == request.prompt
    assert (body["max_tokens"], body["ignore_eos"], body["stream"]) == (5, True, True)
    assert body["stream_options"] == {"include_usage": True}
    chat = orjson.loads(request_body(request, "m", "chat"))
    assert chat["messages"] == [{"role": "user", "content": request.prompt}]
    assert request_headers(request)["x-pilothouse-tenant"] == "group-0"


@pytest.mark.parametrize("api", ["completions", "chat"])
async def test_run_request_times_every_token(engine: str, api: str) -> None:
    first, again = workload_requests(2)  # one user asks the same question twice
    path = "/v1/completions" if api == "completions" else "/v1/chat/completions"
    async with aiohttp.ClientSession() as session:
        outcome = await run_request(session, engine + path, first, "sim-model", api)
        repeat = await run_request(session, engine + path, again, "sim-model", api)
    assert outcome.ok, outcome.error
    assert outcome.completion_tokens == 5
    assert len(outcome.gaps) == 4
    assert outcome.first_token_at is not None
    assert outcome.sent_at < outcome.first_token_at <= outcome.done_at
    if api == "completions":  # the engine counts the workload's tokens
        assert outcome.prompt_tokens == first.prompt_tokens
    assert repeat.cached_tokens is not None
    assert repeat.cached_tokens >= 64


async def test_failures_become_outcomes(engine: str) -> None:
    request = workload_requests(1)[0]
    async with aiohttp.ClientSession() as session:
        missing = await run_request(
            session, engine + "/v1/completions", request, "nope", "completions"
        )
        refused = await run_request(
            session, "http://127.0.0.1:9/v1/completions", request, "m", "completions"
        )
    assert missing.error is not None
    assert missing.error.startswith("HTTP 404")
    assert refused.error is not None
    assert "ClientConnectorError" in refused.error


def test_packed_chunks_fall_back_to_the_mean_gap_per_token() -> None:
    state = _StreamState()
    for at, text in ((1.0, "a b"), (1.4, "c d"), (2.0, "e f")):
        state.event(orjson.dumps({"choices": [{"text": text}]}), at)
    state.event(b"[DONE]", 2.1)
    assert state.done
    assert state.gaps == [pytest.approx(0.4), pytest.approx(0.6)]
    assert state.per_token_gaps(3) == tuple(state.gaps)
    assert state.per_token_gaps(6) == pytest.approx((0.2,) * 5)
