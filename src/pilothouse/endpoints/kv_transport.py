"""Where an endpoint publishes KV events, and the ZMQ feed that reads them.

Addresses come from endpoint labels (set by discovery: an endpoints file, pod labels, or code):

- ``pilothouse.dev/kv-events``: the PUB socket, ``tcp://host:port`` (or ``ipc://…``), or a bare
  port (``5557``) on the endpoint's own host — the form Kubernetes label values allow;
- ``pilothouse.dev/kv-replay``: the ROUTER replay socket, same forms (optional);
- ``pilothouse.dev/kv-topic``: only frames with exactly this topic are read (optional).

A feed (:class:`EventFeed`) is one publisher seen from here: live ``(seq, payload)`` batches
from a SUB socket, a :data:`CONNECTED` marker each time the connection is established (a ZMQ
socket monitor watches handshakes: batches published before it were dropped by the PUB, and a
reconnection may be to a restarted engine), and replays over a short-lived DEALER: send
``[b"", start_seq]``, receive ``[b"", seq, payload]`` (the simulator, older vLLM) or
``[b"", topic, seq, payload]`` (vLLM 0.32) until ``seq`` is the end marker ``0xff…ff``.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Protocol

import zmq
import zmq.asyncio
from zmq.utils.monitor import parse_monitor_message

from pilothouse.errors import EngineError
from pilothouse.kvevents import END_SEQ
from pilothouse.scheduling.types import Endpoint

log = logging.getLogger("pilothouse.kv_events")

KV_EVENTS_LABEL = "pilothouse.dev/kv-events"
KV_REPLAY_LABEL = "pilothouse.dev/kv-replay"
KV_TOPIC_LABEL = "pilothouse.dev/kv-topic"
_SCHEMES = ("tcp://", "ipc://", "inproc://")


@dataclass(frozen=True, slots=True)
class KVEventAddress:
    """ZMQ addresses of one publisher; ``topic`` empty: every frame of that socket."""

    events: str
    replay: str | None = None
    topic: str = ""


def kv_event_address(endpoint: Endpoint) -> KVEventAddress | None:
    """The endpoint's KV-event addresses from its labels; ``ValueError`` when malformed."""
    labels = endpoint.labels
    events = labels.get(KV_EVENTS_LABEL)
    if not events:
        return None
    host = endpoint.address.rsplit(":", 1)[0]
    replay = labels.get(KV_REPLAY_LABEL)
    return KVEventAddress(
        events=_zmq_address(events, host, KV_EVENTS_LABEL),
        replay=_zmq_address(replay, host, KV_REPLAY_LABEL) if replay else None,
        topic=labels.get(KV_TOPIC_LABEL, ""),
    )


def _zmq_address(value: str, host: str, label: str) -> str:
    if value.isdigit() and 0 < int(value) < 65536:
        return f"tcp://{host}:{int(value)}"
    if value.startswith(_SCHEMES):
        return value
    raise ValueError(f"label {label}={value!r} is neither tcp://host:port nor a port number")


CONNECTED = None
"""What :meth:`EventFeed.recv` returns when the connection to the publisher was established
(again): batches published meanwhile were missed, and a new connection may be a new engine."""

FeedItem = tuple[int, bytes] | None


class EventFeed(Protocol):
    """One publisher's stream of KV-event batches."""

    async def recv(self) -> FeedItem:
        """The next live batch of the topic, ``(seq, msgpack payload)``, or :data:`CONNECTED`.

        Raises :class:`EngineError` when the feed cannot go on.
        """
        ...

    async def replay(self, start: int) -> list[tuple[int, bytes]]:
        """Buffered batches from ``start`` on; empty without a replay socket or on timeout."""
        ...

    async def close(self) -> None: ...


def replayed_batch(frames: list[bytes]) -> tuple[int, bytes] | None:
    """``(seq, payload)`` of one replay reply; ``None`` at the end marker or a malformed reply.

    Replies are ``[b"", seq, payload]`` (the simulator, older vLLM) or, since vLLM added the
    topic, ``[b"", topic, seq, payload]``.
    """
    if len(frames) not in (3, 4) or frames[0] != b"":
        return None
    seq, payload = frames[-2], frames[-1]
    if len(seq) != 8 or seq == END_SEQ:
        return None
    return int.from_bytes(seq, "big"), payload


class FeedFactory(Protocol):
    def __call__(self, address: KVEventAddress) -> EventFeed:
        """Open a feed; :class:`EngineError` when the address cannot be used."""
        ...

    async def close(self) -> None:
        """Release what the factory shares between feeds (after every feed is closed)."""
        ...


class ZmqFeed:
    """A SUB socket and a connection monitor feeding one queue, plus a DEALER per replay."""

    def __init__(
        self,
        ctx: zmq.asyncio.Context,
        address: KVEventAddress,
        replay_timeout_s: float,
        queue_size: int = 10_000,
    ) -> None:
        self._ctx = ctx
        self._address = address
        self._topic = address.topic.encode("utf-8")
        self._timeout = replay_timeout_s
        self._items: asyncio.Queue[FeedItem | EngineError] = asyncio.Queue(queue_size)
        self._sub = ctx.socket(zmq.SUB)
        self._monitor = self._sub.get_monitor_socket(zmq.EVENT_HANDSHAKE_SUCCEEDED)
        try:
            self._sub.setsockopt(zmq.IPV6, 1)
            self._sub.set_hwm(100_000)
            self._sub.setsockopt(zmq.SUBSCRIBE, self._topic)
            self._sub.connect(address.events)
        except zmq.ZMQError as exc:
            self._close_sockets()
            raise EngineError(f"cannot subscribe to {address.events}: {exc}") from exc
        self._tasks = (
            asyncio.create_task(self._read(), name="kv-read"),
            asyncio.create_task(self._watch_connection(), name="kv-monitor"),
        )

    async def recv(self) -> FeedItem:
        item = await self._items.get()
        if isinstance(item, EngineError):
            raise item
        return item

    async def replay(self, start: int) -> list[tuple[int, bytes]]:
        if self._address.replay is None:
            return []
        batches: list[tuple[int, bytes]] = []
        dealer = self._ctx.socket(zmq.DEALER)
        try:
            dealer.setsockopt(zmq.IPV6, 1)
            dealer.connect(self._address.replay)
            async with asyncio.timeout(self._timeout):
                await dealer.send_multipart((b"", start.to_bytes(8, "big")))
                while True:
                    batch = replayed_batch(await dealer.recv_multipart())
                    if batch is None:
                        return batches
                    batches.append(batch)
        except (TimeoutError, zmq.ZMQError) as exc:
            log.warning("KV replay from %s failed after %d batch(es): %r", self._address.replay,
                        len(batches), exc)  # fmt: skip
            return batches
        finally:
            dealer.close(linger=0)

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._close_sockets()

    def _close_sockets(self) -> None:
        self._sub.disable_monitor()
        self._monitor.close(linger=0)
        self._sub.close(linger=0)

    async def _read(self) -> None:
        try:
            while True:
                frames = await self._sub.recv_multipart()
                if len(frames) != 3 or len(frames[1]) != 8:
                    log.warning("ignoring a malformed KV event message (%d frames)", len(frames))
                elif not self._topic or frames[0] == self._topic:
                    await self._items.put((int.from_bytes(frames[1], "big"), frames[2]))
        except zmq.ZMQError as exc:
            await self._items.put(EngineError(f"KV events from {self._address.events}: {exc}"))

    async def _watch_connection(self) -> None:
        while True:
            event = parse_monitor_message(await self._monitor.recv_multipart())
            if event["event"] == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                await self._items.put(CONNECTED)


class ZmqFeedFactory:
    """Opens :class:`ZmqFeed`\\ s on one shared ZMQ context, created on first use."""

    def __init__(self, replay_timeout_s: float = 5.0) -> None:
        self._timeout = replay_timeout_s
        self._ctx: zmq.asyncio.Context | None = None

    def __call__(self, address: KVEventAddress) -> ZmqFeed:
        if self._ctx is None:
            self._ctx = zmq.asyncio.Context()
        return ZmqFeed(self._ctx, address, self._timeout)

    async def close(self) -> None:
        if self._ctx is not None:
            self._ctx.term()
            self._ctx = None
