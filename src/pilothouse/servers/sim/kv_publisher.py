"""Publish the engine model's KV events over ZMQ exactly as vLLM's ZmqEventPublisher does.

- PUB socket, multipart ``[topic, seq (8-byte big-endian, from 0), msgpack(EventBatch)]``,
  one batch per engine step that changed the prefix cache.
- ROUTER replay socket: a DEALER sends ``[b"", start_seq (8 bytes big-endian)]`` and gets
  ``[b"", seq, payload]`` for every buffered batch with ``seq >= start_seq`` (the last
  ``buffer_steps`` batches), then ``[b"", seq = -1 (0xff * 8), b""]``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Mapping, Sequence

import zmq
import zmq.asyncio

from pilothouse.kvevents import (
    END_SEQ,
    AllBlocksCleared,
    BlockRemoved,
    BlockStored,
    encode_event_batch,
)
from pilothouse.sim.types import AllBlocksClearedEvent, BlocksRemoved, BlocksStored, KVEvent

log = logging.getLogger(__name__)

WireEvent = BlockStored | BlockRemoved | AllBlocksCleared


def to_wire(
    events: Sequence[KVEvent], block_size: int, lora_ids: Mapping[str, int]
) -> list[WireEvent]:
    """The engine model's events as vLLM structs (int block hashes), each with its medium:
    ``GPU`` for the prefix cache, ``CPU`` for the CPU tier (stores without parent or token
    ids, as vLLM's offloading connector sends them)."""
    wire: list[WireEvent] = []
    for event in events:
        if isinstance(event, BlocksStored):
            lora = event.lora_name
            wire.append(
                BlockStored(
                    block_hashes=list(event.block_hashes),
                    parent_block_hash=event.parent_block_hash,
                    token_ids=list(event.token_ids),
                    block_size=block_size,
                    lora_id=None if lora is None else lora_ids.get(lora),
                    medium=event.medium,
                    lora_name=lora,
                )
            )
        elif isinstance(event, BlocksRemoved):
            wire.append(BlockRemoved(block_hashes=list(event.block_hashes), medium=event.medium))
        elif isinstance(event, AllBlocksClearedEvent):
            wire.append(AllBlocksCleared())
    return wire


class KVEventPublisher:
    """PUB + ROUTER sockets on the running asyncio loop; one per simulated replica."""

    def __init__(
        self,
        host: str,
        port: int,
        replay_port: int | None,
        topic: str,
        *,
        layout: str = "array",
        buffer_steps: int = 10_000,
        hwm: int = 100_000,
    ) -> None:
        self._ctx = zmq.asyncio.Context()
        self._pub = self._ctx.socket(zmq.PUB)
        self._pub.set_hwm(hwm)
        self.port = _bind(self._pub, host, port)
        self._router: zmq.asyncio.Socket | None = None
        self.replay_port: int | None = None
        if replay_port is not None:
            self._router = self._ctx.socket(zmq.ROUTER)
            self.replay_port = _bind(self._router, host, replay_port)
        self.host = host
        self.topic = topic
        self._topic = topic.encode("utf-8")
        self._layout = layout
        self._buffer: deque[tuple[int, bytes]] = deque(maxlen=buffer_steps)
        self._next_seq = 0
        self._replay_task: asyncio.Task[None] | None = None

    @property
    def endpoint(self) -> str:
        return f"tcp://{self.host}:{self.port}"

    @property
    def replay_endpoint(self) -> str | None:
        return None if self.replay_port is None else f"tcp://{self.host}:{self.replay_port}"

    def start(self) -> None:
        if self._router is not None and self._replay_task is None:
            self._replay_task = asyncio.get_running_loop().create_task(self._serve_replay())

    async def publish(self, events: Sequence[WireEvent], ts: float) -> int:
        """Send one batch; returns its sequence number."""
        seq = self._next_seq
        self._next_seq += 1
        payload = encode_event_batch(list(events), ts, 0, self._layout)
        self._buffer.append((seq, payload))
        await self._pub.send_multipart((self._topic, seq.to_bytes(8, "big"), payload))
        return seq

    async def close(self) -> None:
        if self._replay_task is not None:
            self._replay_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._replay_task
        self._pub.close(linger=0)
        if self._router is not None:
            self._router.close(linger=0)
        self._ctx.term()

    async def _serve_replay(self) -> None:
        router = self._router
        assert router is not None
        while True:
            frames = await router.recv_multipart()
            if len(frames) != 3:
                log.warning("ignoring a malformed KV replay request (%d frames)", len(frames))
                continue
            client, _empty, start = frames
            start_seq = int.from_bytes(start, "big")
            for seq, payload in list(self._buffer):
                if seq >= start_seq:
                    await router.send_multipart((client, b"", seq.to_bytes(8, "big"), payload))
            await router.send_multipart((client, b"", END_SEQ, b""))


def _bind(socket: zmq.asyncio.Socket, host: str, port: int) -> int:
    if port == 0:
        return socket.bind_to_random_port(f"tcp://{host}")
    socket.bind(f"tcp://{host}:{port}")
    return port
