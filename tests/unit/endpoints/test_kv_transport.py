"""Replay replies in both wire forms: ``[b"", seq, payload]`` and vLLM 0.32's with the topic."""

from __future__ import annotations

import asyncio

import pytest
import zmq
import zmq.asyncio

from pilothouse.endpoints.kv_transport import KVEventAddress, ZmqFeedFactory, replayed_batch
from pilothouse.kvevents import END_SEQ

SEQ5 = (5).to_bytes(8, "big")


@pytest.mark.parametrize(
    ("frames", "expected"),
    [
        ([b"", SEQ5, b"p"], (5, b"p")),  # the simulator, older vLLM
        ([b"", b"kv@t", SEQ5, b"p"], (5, b"p")),  # vLLM 0.32 adds the topic
        ([b"", END_SEQ, b""], None),
        ([b"", b"", END_SEQ, b""], None),  # vLLM 0.32's end marker
        ([b"", SEQ5], None),
        ([b"x", SEQ5, b"p"], None),
        ([b"", b"short", b"p"], None),
    ],
)
def test_replayed_batch(frames: list[bytes], expected: tuple[int, bytes] | None) -> None:
    assert replayed_batch(frames) == expected


async def test_a_feed_replays_from_a_router_that_sends_the_topic() -> None:
    """A ROUTER answering as vLLM 0.32's ``ZmqEventPublisher._service_replay`` does."""
    ctx = zmq.asyncio.Context()
    router = ctx.socket(zmq.ROUTER)
    port = router.bind_to_random_port("tcp://127.0.0.1")
    pub = ctx.socket(zmq.PUB)
    pub_port = pub.bind_to_random_port("tcp://127.0.0.1")
    buffer = [(seq, f"batch{seq}".encode()) for seq in range(4)]

    async def serve() -> None:
        client, _, start = await router.recv_multipart()
        for seq, payload in buffer:
            if seq >= int.from_bytes(start, "big"):
                await router.send_multipart((client, b"", b"kv@t", seq.to_bytes(8, "big"), payload))
        await router.send_multipart((client, b"", b"", END_SEQ, b""))

    factory = ZmqFeedFactory(replay_timeout_s=5.0)
    address = KVEventAddress(
        events=f"tcp://127.0.0.1:{pub_port}", replay=f"tcp://127.0.0.1:{port}", topic="kv@t"
    )
    feed = factory(address)
    server = asyncio.create_task(serve())
    try:
        assert await feed.replay(2) == [(2, b"batch2"), (3, b"batch3")]
        await server
    finally:
        await feed.close()
        await factory.close()
        router.close(linger=0)
        pub.close(linger=0)
        ctx.term()
