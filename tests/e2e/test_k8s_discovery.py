"""InferencePool discovery against an in-process fake of the Kubernetes list/watch API.

A real ``kubernetes`` client talks HTTP to :class:`pilothouse.testing.fake_kube.FakeKubeAPI`
on 127.0.0.1; the tests change Pods and the InferencePool there and check the endpoint sets
the source reports: add, update to not-Ready, delete, selector and port changes, a dropped
watch resumed from its resourceVersion, and 410 Gone answered by listing again.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from typing import Any

import pytest

pytest.importorskip("kubernetes", reason="needs the 'k8s' extra (pip install 'pilothouse[k8s]')")

from pilothouse.endpoints.kubernetes import (
    InferencePoolSource,
    WatchSettings,
    pool_endpoints,
)
from pilothouse.scheduling.types import Endpoint
from pilothouse.testing import kube_objects as ko
from pilothouse.testing.fake_kube import FakeKubeAPI, RecordedRequest

pytestmark = pytest.mark.e2e

NS = "inference"
POOL = "qwen"
SELECTOR = {"pilothouse.dev/pool": "qwen"}
FAST = WatchSettings(
    watch_timeout_s=30,
    request_timeout_s=5.0,
    backoff_initial_s=0.02,
    backoff_max_s=0.2,
    min_watch_s=0.05,
    join_timeout_s=5.0,
)

EndpointSet = tuple[Endpoint, ...]


def pod(name: str, ip: str | None, **kwargs: Any) -> dict[str, Any]:
    labels = kwargs.pop("labels", SELECTOR)
    return ko.pod(name, ip=ip, labels=labels, namespace=NS, **kwargs)


def pool(**kwargs: Any) -> dict[str, Any]:
    kwargs.setdefault("match_labels", SELECTOR)
    return ko.inference_pool(POOL, namespace=NS, **kwargs)


def targets(endpoints: EndpointSet) -> list[tuple[str, str]]:
    return sorted((e.name, e.address) for e in endpoints)


class Collector:
    """The sink: keeps every reported set, and lets a test wait for one."""

    def __init__(self) -> None:
        self.sets: list[EndpointSet] = []
        self._changed = asyncio.Event()

    def __call__(self, endpoints: Sequence[Endpoint]) -> None:
        self.sets.append(tuple(endpoints))
        self._changed.set()

    async def until(self, predicate: Callable[[EndpointSet], bool], within: float = 5.0) -> Any:
        async with asyncio.timeout(within):
            while not (self.sets and predicate(self.sets[-1])):
                self._changed.clear()
                await self._changed.wait()
        return self.sets[-1]

    async def targets(self, expected: list[tuple[str, str]]) -> EndpointSet:
        result: EndpointSet = await self.until(lambda s: targets(s) == expected)
        return result


@pytest.fixture
def fake(request: pytest.FixtureRequest) -> Iterator[FakeKubeAPI]:
    expire_with_status = getattr(request, "param", False)
    with FakeKubeAPI(expire_with_status=expire_with_status, max_watch_s=30) as api:
        yield api


@pytest.fixture
async def discovery(fake: FakeKubeAPI) -> AsyncIterator[Collector]:
    """The source running against ``fake``; stopped (threads joined) at the end."""
    client = fake.api_client()
    collector = Collector()
    source = InferencePoolSource(POOL, NS, api_client=client, settings=FAST)
    task = asyncio.create_task(source.run(collector))
    try:
        yield collector
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        client.close()
        alive = [t.name for t in threading.enumerate() if t.name.startswith("pilothouse-k8s-")]
        assert alive == [], f"watch threads still running: {alive}"


async def wait_request(
    fake: FakeKubeAPI, predicate: Callable[[RecordedRequest], bool], after: int = 0
) -> RecordedRequest:
    return await asyncio.to_thread(fake.wait_for_request, predicate, after=after, timeout=5.0)


def pod_watch(r: RecordedRequest) -> bool:
    return r.watch and r.path.endswith("/pods")


def pod_list(r: RecordedRequest) -> bool:
    return not r.watch and r.path.endswith("/pods")


# --------------------------------------------------------------------------- the watch loop


async def test_add_update_to_not_ready_and_delete(fake: FakeKubeAPI, discovery: Collector) -> None:
    fake.put(pool())
    fake.put(pod("vllm-a", "10.1.0.1", labels={**SELECTOR, "llm-d.ai/engine-type": "sglang"}))
    fake.put(pod("other", "10.1.0.9", labels={"app": "unrelated"}))
    fake.put(pod("vllm-pending", None, ready=False))
    first = await discovery.targets([("vllm-a-rank-0", "10.1.0.1:8000")])
    assert (first[0].model, first[0].engine) == (POOL, "sglang")
    assert first[0].labels["pilothouse.dev/pool"] == "qwen"

    fake.put(pod("vllm-b", "10.1.0.2"))  # add
    both = [("vllm-a-rank-0", "10.1.0.1:8000"), ("vllm-b-rank-0", "10.1.0.2:8000")]
    added = await discovery.targets(both)
    assert {e.engine for e in added} == {"sglang", "vllm"}  # vllm is the default engine

    fake.put(pod("vllm-a", "10.1.0.1", ready=False))  # update to not-Ready
    await discovery.targets([("vllm-b-rank-0", "10.1.0.2:8000")])
    fake.put(pod("vllm-a", "10.1.0.1"))  # Ready again
    await discovery.targets(both)
    fake.put(pod("vllm-b", "10.1.0.2", terminating=True))  # Ready but being deleted
    await discovery.targets([("vllm-a-rank-0", "10.1.0.1:8000")])
    fake.delete("Pod", "vllm-a", NS)  # delete
    await discovery.targets([])


async def test_pool_changes_selector_ports_and_existence(
    fake: FakeKubeAPI, discovery: Collector
) -> None:
    await discovery.targets([])  # the pool does not exist yet: an empty set is reported
    fake.put(pod("a", "10.2.0.1"))
    fake.put(pod("b", "10.2.0.2", labels={"pilothouse.dev/pool": "canary"}))
    fake.put(pool())
    await discovery.targets([("a-rank-0", "10.2.0.1:8000")])

    fake.put(pool(match_labels={"pilothouse.dev/pool": "canary"}))  # selector change
    await discovery.targets([("b-rank-0", "10.2.0.2:8000")])
    fake.put(pool(match_labels={"pilothouse.dev/pool": "canary"}, target_ports=(8000, 8001)))
    await discovery.targets([("b-rank-0", "10.2.0.2:8000"), ("b-rank-1", "10.2.0.2:8001")])
    fake.delete("InferencePool", POOL, NS)
    await discovery.targets([])


async def test_sets_are_reported_only_on_change(fake: FakeKubeAPI, discovery: Collector) -> None:
    fake.put(pool())
    fake.put(pod("a", "10.3.0.1"))
    await discovery.targets([("a-rank-0", "10.3.0.1:8000")])
    reported = len(discovery.sets)
    fake.put(pod("unrelated", "10.3.0.9", labels={"app": "x"}))
    fake.put(pod("b", "10.3.0.2"))
    await discovery.targets([("a-rank-0", "10.3.0.1:8000"), ("b-rank-0", "10.3.0.2:8000")])
    assert len(discovery.sets) == reported + 1


@pytest.mark.parametrize("abrupt", [True, False], ids=["connection-lost", "server-ended"])
async def test_dropped_watch_resumes_from_last_resource_version(
    fake: FakeKubeAPI, discovery: Collector, abrupt: bool
) -> None:
    fake.put(pool())
    fake.put(pod("a", "10.4.0.1"))
    await discovery.targets([("a-rank-0", "10.4.0.1:8000")])
    fake.put(pod("b", "10.4.0.2"))
    await discovery.targets([("a-rank-0", "10.4.0.1:8000"), ("b-rank-0", "10.4.0.2:8000")])
    await wait_request(fake, pod_watch)  # the first watch is open
    last_seen = fake.resource_version  # the rv of pod b's ADDED event
    mark = len(fake.requests())

    fake.drop_watches(abrupt=abrupt)
    resumed = await wait_request(fake, pod_watch, after=mark)
    assert resumed.query["resourceVersion"] == str(last_seen)
    fake.put(pod("c", "10.4.0.3"))
    await discovery.until(lambda s: len(s) == 3)
    assert not [r for r in fake.requests()[mark:] if pod_list(r)], "resumed, not relisted"


async def test_bookmark_moves_the_resume_point(fake: FakeKubeAPI, discovery: Collector) -> None:
    fake.put(pool())
    fake.put(pod("a", "10.5.0.1"))
    await discovery.targets([("a-rank-0", "10.5.0.1:8000")])
    first = await wait_request(fake, pod_watch)
    await asyncio.sleep(0.1)  # the watch request is recorded before its stream is served
    assert first.query["allowWatchBookmarks"] == "true"
    bookmark_rv = fake.bookmark()
    await asyncio.sleep(0.2)  # let the bookmark reach the source
    mark = len(fake.requests())
    fake.drop_watches()
    resumed = await wait_request(fake, pod_watch, after=mark)
    assert resumed.query["resourceVersion"] == str(bookmark_rv)


@pytest.mark.parametrize("fake", [False, True], ids=["error-event", "http-410"], indirect=True)
async def test_gone_410_lists_again(fake: FakeKubeAPI, discovery: Collector) -> None:
    fake.put(pool())
    fake.put(pod("a", "10.6.0.1"))
    fake.put(pod("b", "10.6.0.2"))
    both = [("a-rank-0", "10.6.0.1:8000"), ("b-rank-0", "10.6.0.2:8000")]
    await discovery.targets(both)
    await wait_request(fake, pod_watch)
    stale_rv = fake.resource_version
    mark = len(fake.requests())

    # Changes the watches never see, history compacted, connections lost: only a relist helps.
    fake.put(pod("a", "10.6.0.1", ready=False), notify=False)
    fake.delete("Pod", "b", NS, notify=False)
    fake.put(pod("c", "10.6.0.3"), notify=False)
    fake.expire_history()
    fake.drop_watches()

    await discovery.targets([("c-rank-0", "10.6.0.3:8000")])
    later = fake.requests()[mark:]
    stale = [r for r in later if pod_watch(r) and r.query["resourceVersion"] == str(stale_rv)]
    assert stale, "the source first tried to resume"
    assert any(pod_list(r) for r in later[later.index(stale[0]) :]), "then listed again"


# --------------------------------------------------------------------------- pure selection


def test_endpoints_per_target_port_and_active_ports_annotation() -> None:
    spec_pool = ko.inference_pool(POOL, match_labels=SELECTOR, target_ports=(8000, 8001, 8002))
    pods = [
        ko.pod("x", ip="10.7.0.1", labels=SELECTOR),
        ko.pod("y", ip="10.7.0.2", labels=SELECTOR, annotations={"llm-d.ai/active-ports": "8002"}),
        ko.pod("z", ip="fd00::5", labels=SELECTOR),
    ]
    got = targets(pool_endpoints(spec_pool, pods))
    assert got == [
        ("x-rank-0", "10.7.0.1:8000"),
        ("x-rank-1", "10.7.0.1:8001"),
        ("x-rank-2", "10.7.0.1:8002"),
        ("y-rank-2", "10.7.0.2:8002"),  # ranks keep the index into targetPorts
        ("z-rank-0", "[fd00::5]:8000"),
        ("z-rank-1", "[fd00::5]:8001"),
        ("z-rank-2", "[fd00::5]:8002"),
    ]
    assert pool_endpoints(None, pods) == ()


def _objective(name: str, pool_name: str, priority: int | None) -> dict[str, object]:
    spec: dict[str, object] = {"poolRef": {"name": pool_name}}
    if priority is not None:
        spec["priority"] = priority
    return {
        "apiVersion": "inference.networking.x-k8s.io/v1alpha2",
        "kind": "InferenceObjective",
        "metadata": {"name": name, "namespace": NS},
        "spec": spec,
    }


async def test_the_pools_inference_objectives_are_followed(fake: FakeKubeAPI) -> None:
    client = fake.api_client()
    seen: list[dict[str, int]] = []
    source = InferencePoolSource(POOL, NS, api_client=client, settings=FAST)
    source.on_objectives = lambda objectives: seen.append(dict(objectives))
    fake.put(pool())
    fake.put(_objective("critical", POOL, 10))
    fake.put(_objective("other-pool", "another", 99))  # not this pool's
    task = asyncio.create_task(source.run(Collector()))
    try:
        async with asyncio.timeout(10):
            while not seen or seen[-1] != {"critical": 10}:  # noqa: ASYNC110
                await asyncio.sleep(0.02)
            fake.put(_objective("batch", POOL, None))  # no priority: 0
            fake.put(_objective("critical", POOL, 20))
            while seen[-1] != {"critical": 20, "batch": 0}:  # noqa: ASYNC110
                await asyncio.sleep(0.02)
            fake.delete("InferenceObjective", "critical", NS)
            while seen[-1] != {"batch": 0}:  # noqa: ASYNC110
                await asyncio.sleep(0.02)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        client.close()
