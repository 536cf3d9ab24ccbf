"""The endpoint picker has the gateway's request-path features, through a real Envoy over TLS.

One request pipeline serves both front doors (issue #10): flow control answers 429 with
``retry-after`` as an immediate response, a request to a pool at zero is held until an
endpoint is ready, a canary split rewrites the body's ``model``, and an objective's
priority orders the queue under contention.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest

from pilothouse.config.epp import EppPolicy
from pilothouse.routing import Ticket
from pilothouse.servers.sim.runner import SimServer
from tests.e2e.test_envoy_epp import (
    HOLD_TOKENS,
    Stack,
    _chat,
    _free_port,
    _sim_settings,
    envoy_binary,
    envoy_stack,
)

pytestmark = pytest.mark.e2e
__all__ = ["envoy_binary"]  # the fixture, imported for the tests below

OBJECTIVE = "x-gateway-inference-objective"


def _policy(**document: Any) -> EppPolicy:
    return EppPolicy.model_validate(document)


def _flow(**changes: Any) -> dict[str, Any]:
    return {
        "enabled": True,
        "max_queue": 8,
        "queue_timeout_s": 30,
        "retry_after_s": 3,
        "saturation": {"max_in_flight_per_replica": 1},
        "objectives": {"critical": 10, "batch": -1},
        **changes,
    }


async def _hold_open(stack: Stack, tag: str) -> Any:
    """A long stream that keeps the only slot busy until it is closed."""
    reply = await stack.session.post(
        stack.url(), json=_chat(tag, max_tokens=HOLD_TOKENS, stream=True)
    )
    assert reply.status == 200
    await reply.content.readany()
    return reply


async def test_flow_control_sheds_with_429_and_retry_after(
    envoy_binary: Path, tmp_path: Path
) -> None:
    policy = _policy(flow_control=_flow(max_queue=0))
    async with envoy_stack(envoy_binary, tmp_path, replicas=1, policy=policy) as stack:
        busy = await _hold_open(stack, "busy")
        try:
            status, headers, body = await stack.post(_chat("one more?", max_tokens=2))
        finally:
            busy.close()
        assert status == 429
        assert headers["retry-after"] == "3"
        assert orjson.loads(body)["error"]["type"] == "rate_limit_exceeded"
        await stack.no_request_in_flight()
        assert (await stack.post(_chat("and now?", max_tokens=2)))[0] == 200


async def test_a_request_to_a_pool_at_zero_is_held_and_served(
    envoy_binary: Path, tmp_path: Path
) -> None:
    port = _free_port()
    policy = _policy(hold={"enabled": True, "timeout_s": 60})
    async with envoy_stack(
        envoy_binary, tmp_path, replicas=0, policy=policy, later={"r0": port}
    ) as stack:
        request = asyncio.create_task(stack.post(_chat("wake up", max_tokens=2)))
        pipeline = stack.epp.pipeline
        while pipeline.held("pool") < 1:
            assert not request.done(), await request
            await asyncio.sleep(0.02)
        sim = SimServer(_sim_settings(["m"], port=port))  # the replica comes up
        await sim.start()
        try:
            status, headers, _ = await asyncio.wait_for(request, 60)
        finally:
            await sim.stop()
        assert status == 200
        assert headers["x-pilothouse-endpoint"] == "r0"
        assert pipeline.held("pool") == 0


async def test_a_canary_split_is_honoured(envoy_binary: Path, tmp_path: Path) -> None:
    split = {
        "name": "chat",
        "versions": [{"model": "m", "weight": 1}, {"model": "m-v2", "weight": 3}],
    }
    policy = _policy(traffic=[split])
    async with envoy_stack(
        envoy_binary, tmp_path, replicas=2, policy=policy, models=("m", "m-v2")
    ) as stack:
        served: Counter[str] = Counter()
        for i in range(8):
            body = {**_chat(f"canary {i}", max_tokens=2), "model": "chat"}
            status, _, raw = await stack.post(body)
            assert status == 200, raw
            served[orjson.loads(raw)["model"]] += 1
        assert served == {"m": 2, "m-v2": 6}  # smooth weighted round-robin: exact shares
        status, _, raw = await stack.post({**_chat("sticky", max_tokens=2), "model": "chat"},
                                          **{"x-session-id": "s-1"})  # fmt: skip
        first = orjson.loads(raw)["model"]
        for _ in range(3):
            _, _, raw = await stack.post({**_chat("sticky", max_tokens=2), "model": "chat"},
                                         **{"x-session-id": "s-1"})  # fmt: skip
            assert orjson.loads(raw)["model"] == first


async def test_a_priority_objective_is_served_first_under_contention(
    envoy_binary: Path, tmp_path: Path
) -> None:
    policy = _policy(flow_control=_flow())
    async with envoy_stack(envoy_binary, tmp_path, replicas=1, policy=policy) as stack:
        pipeline = stack.epp.pipeline
        order: list[str] = []
        started = pipeline.started

        def recording(ticket: Ticket, pick: Any) -> None:
            order.append(ticket.request.prompt)
            started(ticket, pick)

        pipeline.started = recording  # type: ignore[method-assign]
        busy = await _hold_open(stack, "busy")
        waiting = []
        for tag, objective in (("batch-1", "batch"), ("batch-2", "batch"), ("urgent", "critical")):
            body = _chat(tag, max_tokens=2)
            waiting.append(asyncio.create_task(stack.post(body, **{OBJECTIVE: objective})))
            while pipeline.queued("pool") < len(waiting):  # noqa: ASYNC110
                await asyncio.sleep(0.02)
        busy.close()
        results = await asyncio.wait_for(asyncio.gather(*waiting), 60)
        assert [status for status, _, _ in results] == [200, 200, 200]
        served = [next(t for t in ("urgent", "batch-1", "batch-2") if t in p) for p in order[1:]]
        assert served == ["urgent", "batch-1", "batch-2"]
