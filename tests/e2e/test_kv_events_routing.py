"""Precise prefix routing from real KV events: simulator replicas, subscriber, gateway.

Three ``engine sim`` replicas publish KV events over ZMQ on loopback; the gateway follows
them (``kv_events``) and schedules with ``precise-prefix``. Prompts are sent straight to a
replica, bypassing the gateway, so the gateway's routing history knows nothing: only the
events can tell it where a prefix lives.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import uvicorn

from pilothouse.clock import SystemClock
from pilothouse.config.fleet import GatewaySpec
from pilothouse.endpoints.kv_index import KVBlockIndex
from pilothouse.endpoints.kv_subscriber import KVEventSubscriber
from pilothouse.endpoints.kv_transport import (
    CONNECTED,
    KV_EVENTS_LABEL,
    KV_REPLAY_LABEL,
    KV_TOPIC_LABEL,
    EventFeed,
    FeedItem,
    KVEventAddress,
    ZmqFeedFactory,
)
from pilothouse.endpoints.pool import EndpointPool
from pilothouse.endpoints.prompt_tokens import pool_engines
from pilothouse.engines.tokenizer import ChatMessage, DummyTokenizer
from pilothouse.gateway.app import build_gateway_scheduler, create_app
from pilothouse.scheduling.types import Endpoint
from pilothouse.servers.sim import KVEventSettings, SimServer, SimSettings
from tests.e2e.schedulers import PRECISE_PREFIX

pytestmark = pytest.mark.e2e

MODEL = "sim-model"
BLOCK = 16  # the default preset's block size
NAMES = ("A", "B", "C")
SCHEDULER = PRECISE_PREFIX


def system_prompt(topic: str) -> str:
    return " ".join(f"{topic}{i}" for i in range(120))  # ~120 tokens: 7 full blocks


def messages(topic: str, question: str) -> list[dict[str, str]]:
    return [
        {"role": "system", "content": system_prompt(topic)},
        {"role": "user", "content": question},
    ]


def held_blocks(index: KVBlockIndex, replica: str, topic: str) -> int:
    """Blocks of ``topic``'s system prompt (as the sim tokenizes it) that ``replica`` holds."""
    tok = DummyTokenizer()
    prefix = tok.encode(tok.apply_chat_template([ChatMessage("system", system_prompt(topic))]))
    return index.match(index.block_keys(prefix, BLOCK)).get(replica, 0)


async def eventually(condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
    for _ in range(int(timeout_s / 0.02)):
        if condition():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("condition not reached in time")


class DroppingFeeds:
    """Real ZMQ feeds; ``drop_next[endpoint address]`` loses that feed's next live batch."""

    def __init__(self) -> None:
        self._zmq = ZmqFeedFactory()
        self.drop_next: set[str] = set()
        self.dropped: list[int] = []

    def __call__(self, address: KVEventAddress) -> EventFeed:
        return _DroppingFeed(self, address, self._zmq(address))

    async def close(self) -> None:
        await self._zmq.close()


@dataclass
class _DroppingFeed:
    owner: DroppingFeeds
    address: KVEventAddress
    inner: EventFeed

    async def recv(self) -> FeedItem:
        while True:
            item = await self.inner.recv()
            if item is CONNECTED or self.address.events not in self.owner.drop_next:
                return item
            self.owner.drop_next.discard(self.address.events)
            self.owner.dropped.append(item[0])

    async def replay(self, start: int) -> list[tuple[int, bytes]]:
        return await self.inner.replay(start)

    async def close(self) -> None:
        await self.inner.close()


@dataclass
class Cluster:
    servers: dict[str, SimServer]
    pool: EndpointPool
    subscriber: KVEventSubscriber
    gateway: aiohttp.ClientSession
    http: aiohttp.ClientSession
    settings: dict[str, SimSettings] = field(default_factory=dict)

    @property
    def index(self) -> KVBlockIndex:
        return self.subscriber.index

    async def direct(self, replica: str, topic: str, question: str) -> None:
        """A chat request straight to one replica (the gateway does not see it)."""
        url = f"{self.servers[replica].base_url}/v1/chat/completions"
        body = {"model": MODEL, "messages": messages(topic, question), "max_tokens": 1}
        async with self.http.post(url, json=body) as response:
            assert response.status == 200, await response.text()

    async def routed(self, topic: str, question: str) -> str:
        """A chat request through the gateway; returns the replica that served it."""
        body = {"model": MODEL, "messages": messages(topic, question), "max_tokens": 1}
        async with self.gateway.post("/v1/chat/completions", json=body) as response:
            assert response.status == 200, await response.text()
            return response.headers["x-pilothouse-endpoint"]

    async def restart(self, replica: str) -> None:
        """Stop a replica and start a new process on the same ports: its seq starts at 0."""
        old = self.servers[replica]
        kv = KVEventSettings(port=_port(old.kv_endpoint), replay_port=_port(old.kv_replay_endpoint))
        settings = SimSettings(port=old.port, model=MODEL, time_scale=50.0, kv_events=kv)
        await old.stop()
        self.servers[replica] = SimServer(settings)
        await self.servers[replica].start()


def _port(address: str | None) -> int:
    assert address is not None
    return int(address.rsplit(":", 1)[1])


def _endpoint(name: str, server: SimServer) -> Endpoint:
    assert server.kv_endpoint
    assert server.kv_replay_endpoint
    assert server.kv_topic
    labels = {
        KV_EVENTS_LABEL: server.kv_endpoint,
        KV_REPLAY_LABEL: server.kv_replay_endpoint,
        KV_TOPIC_LABEL: server.kv_topic,
    }
    return Endpoint(
        name=name, address=f"127.0.0.1:{server.port}", model=MODEL, engine="sim", labels=labels
    )


class _QuietServer(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self):  # type: ignore[no-untyped-def]
        yield


@contextlib.asynccontextmanager
async def cluster(tmp_path: Path, feeds: DroppingFeeds | None = None) -> AsyncIterator[Cluster]:
    """Three sim replicas with KV events and a gateway with ``kv_events`` on."""
    config = tmp_path / "sched.yaml"
    config.write_text(SCHEDULER)
    spec = GatewaySpec(port=0, probe_interval_s=0.1, scheduler=str(config), kv_events=True)
    servers: dict[str, SimServer] = {}
    async with contextlib.AsyncExitStack() as stack:
        for name in NAMES:
            kv = KVEventSettings(port=0, replay_port=0)
            settings = SimSettings(port=0, model=MODEL, time_scale=50.0, kv_events=kv)
            servers[name] = SimServer(settings)
            await servers[name].start()
            stack.push_async_callback(lambda n=name: servers[n].stop())
        pool = EndpointPool()
        for name, server in servers.items():
            pool.add(_endpoint(name, server), ready=True)
        # As `pilothouse gateway` builds it: prompts tokenized before scheduling, in a worker.
        scheduler, subscriber, prompts = build_gateway_scheduler(
            spec, SystemClock(), engines=pool_engines(pool.candidates), prepared=True
        )
        assert subscriber is not None
        assert prompts is not None
        if feeds is not None:
            subscriber = KVEventSubscriber(subscriber.index, connect=feeds)
        app = create_app(spec, pool, scheduler, kv_events=subscriber, preparer=prompts)
        url = await stack.enter_async_context(_serve(app))
        gateway = await stack.enter_async_context(aiohttp.ClientSession(url))
        http = await stack.enter_async_context(aiohttp.ClientSession())
        await eventually(lambda: sorted(subscriber.subscribed()) == list(NAMES))
        await eventually(lambda: all(_connected(subscriber, name) for name in NAMES))
        yield Cluster(servers, pool, subscriber, gateway, http)


def _connected(subscriber: KVEventSubscriber, name: str) -> bool:
    status = subscriber.status(name)
    return status is not None and status.connections >= 1


@contextlib.asynccontextmanager
async def _serve(app: Any) -> AsyncIterator[str]:
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on")
    server = _QuietServer(config)
    task = asyncio.create_task(server.serve())
    try:
        await eventually(lambda: server.started or task.done())
        yield f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
    finally:
        server.should_exit = True
        await task


async def test_a_prefix_served_directly_is_routed_to_its_replica(tmp_path: Path) -> None:
    async with cluster(tmp_path) as c:
        await c.direct("B", "alpha", "first question")
        await c.direct("C", "bravo", "first question")
        await eventually(lambda: held_blocks(c.index, "B", "alpha") >= 7)
        await eventually(lambda: held_blocks(c.index, "C", "bravo") >= 7)
        assert held_blocks(c.index, "A", "alpha") == 0
        for _ in range(3):  # every time, not by chance
            assert await c.routed("alpha", "another question") == "B"
            assert await c.routed("bravo", "another question") == "C"


async def test_a_gap_is_recovered_through_replay(tmp_path: Path) -> None:
    feeds = DroppingFeeds()
    async with cluster(tmp_path, feeds) as c:
        await c.direct("A", "warmup", "q")  # the subscription is live once this arrives
        await eventually(lambda: held_blocks(c.index, "A", "warmup") >= 7)
        before = c.subscriber.status("A")
        assert before is not None
        feeds.drop_next.add(c.subscriber.subscribed()["A"].events)
        await c.direct("A", "alpha", "q")  # its BlockStored batch is lost on the wire
        await eventually(lambda: bool(feeds.dropped))
        await c.direct("A", "bravo", "q")  # the next batch reveals the gap
        await eventually(lambda: held_blocks(c.index, "A", "bravo") >= 7)
        assert held_blocks(c.index, "A", "alpha") >= 7  # replayed
        after = c.subscriber.status("A")
        assert after is not None
        assert after.replays == before.replays + 1
        assert after.lost == 0
        assert await c.routed("alpha", "another question") == "A"


async def test_a_restarted_replica_is_resynced(tmp_path: Path) -> None:
    async with cluster(tmp_path) as c:
        await c.direct("A", "alpha", "q")
        await eventually(lambda: held_blocks(c.index, "A", "alpha") >= 7)
        await c.restart("A")  # a new engine: empty cache, seq from 0
        for attempt in range(20):  # until the subscriber has reconnected and seen the restart
            await c.direct("A", f"fresh{attempt}", "q")
            with contextlib.suppress(AssertionError):
                await eventually(lambda: c.subscriber.status("A").resets >= 1, 0.5)  # type: ignore[union-attr]
                break
        status = c.subscriber.status("A")
        assert status is not None
        assert status.resets == 1
        await eventually(lambda: held_blocks(c.index, "A", "fresh0") >= 7)  # resynced from 0
        assert held_blocks(c.index, "A", "alpha") == 0  # the old engine's blocks are gone


async def test_a_removed_replica_is_forgotten(tmp_path: Path) -> None:
    async with cluster(tmp_path) as c:
        await c.direct("C", "alpha", "q")
        await eventually(lambda: held_blocks(c.index, "C", "alpha") >= 7)
        c.pool.remove("C")
        await eventually(lambda: "C" not in c.subscriber.subscribed())
        assert not c.index.tracks("C")
        assert held_blocks(c.index, "C", "alpha") == 0
        assert await c.routed("alpha", "q2") in ("A", "B")


async def test_the_endpoint_picker_follows_kv_events(tmp_path: Path) -> None:
    pytest.importorskip("grpc")
    pytest.importorskip("envoy.service.ext_proc.v3.external_processor_pb2")
    from pilothouse.endpoints.discovery import StaticSource
    from pilothouse.endpoints.kv_subscriber import build_kv_scheduler
    from pilothouse.epp.server import EppServer, EppSettings
    from pilothouse.scheduling.config import resolve_config

    config = tmp_path / "sched.yaml"
    config.write_text(SCHEDULER)
    kv = KVEventSettings(port=0, replay_port=0)
    settings = EppSettings(port=0, health_port=0, metrics_port=0, probe_interval_s=0.05)
    async with (
        SimServer(SimSettings(port=0, model=MODEL, time_scale=50.0, kv_events=kv)) as sim,
        aiohttp.ClientSession() as http,
    ):
        scheduler, subscriber = build_kv_scheduler(
            resolve_config(str(config)), SystemClock(), kv_events=True
        )
        assert subscriber is not None
        source = StaticSource([_endpoint("A", sim)])
        async with EppServer(settings, source, scheduler, kv_events=subscriber) as epp:
            await epp.wait_ready()
            await eventually(lambda: _connected(subscriber, "A"))
            body = {"model": MODEL, "messages": messages("alpha", "q"), "max_tokens": 1}
            async with http.post(f"{sim.base_url}/v1/chat/completions", json=body) as response:
                assert response.status == 200
            await eventually(lambda: held_blocks(subscriber.index, "A", "alpha") >= 7)
        assert subscriber.subscribed() == {}  # the picker closed it
        assert not subscriber.index.tracks("A")
