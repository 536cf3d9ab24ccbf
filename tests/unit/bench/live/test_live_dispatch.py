"""Open and closed loops, follow-ups after their parent, failed parents (fake sender)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

import pytest

from pilothouse.bench.live.client import RequestOutcome
from pilothouse.bench.live.dispatch import Dispatcher, RequestStream
from pilothouse.sim.cluster_types import SimRequest

SCALE = 4.0  # simulated seconds per wall second: the workload's times are divided by 4


def req(rid: str, arrival: float, after: str | None = None) -> SimRequest:
    return SimRequest(rid, arrival, "0000", 1, (), 1, 1, after=after)


@dataclass
class FakeSender:
    """Answers after ``service_s``; fails the ids in ``failing``; records sends and ends."""

    service_s: float = 0.02
    failing: frozenset[str] = frozenset()
    sent: dict[str, float] = field(default_factory=dict)
    ended: dict[str, float] = field(default_factory=dict)
    unsent: int = 0
    in_flight: int = 0
    peak: int = 0
    all_sent_at: float | None = None

    async def __call__(self, request: SimRequest) -> RequestOutcome:
        self.sent[request.request_id] = time.perf_counter()
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        await asyncio.sleep(self.service_s)
        self.in_flight -= 1
        done = self.ended[request.request_id] = time.perf_counter()
        error = "boom" if request.request_id in self.failing else None
        return RequestOutcome(request.request_id, self.sent[request.request_id], done, error)

    def on_unsent(self) -> None:
        self.unsent += 1

    def on_all_sent(self) -> None:
        self.all_sent_at = time.perf_counter()


def dispatcher(requests: list[SimRequest], sender: FakeSender) -> Dispatcher:
    stream = RequestStream(requests, SCALE)
    return Dispatcher(stream, sender, sender.on_unsent, sender.on_all_sent)


async def test_open_loop_sends_at_scaled_arrival_times() -> None:
    sender = FakeSender()
    started = time.perf_counter()
    await dispatcher([req("a", 0.0), req("b", 0.2), req("c", 0.4)], sender).open_loop(
        started, SCALE
    )
    assert list(sender.sent) == ["a", "b", "c"]
    for rid, arrival in (("a", 0.0), ("b", 0.2), ("c", 0.4)):
        assert sender.sent[rid] >= started + arrival / SCALE
    assert sender.all_sent_at is not None
    assert sender.all_sent_at >= started + 0.4 / SCALE


async def test_follow_up_waits_for_its_parent_and_the_think_time() -> None:
    sender = FakeSender(service_s=0.03)
    requests = [req("a", 0.0), req("a1", 0.2, after="a"), req("a2", 0.1, after="a1")]
    await dispatcher(requests, sender).open_loop(time.perf_counter(), SCALE)
    assert sender.sent["a1"] >= sender.ended["a"] + 0.2 / SCALE
    assert sender.sent["a2"] >= sender.ended["a1"] + 0.1 / SCALE
    assert sender.unsent == 0


async def test_follow_up_read_after_its_parent_ended_still_waits_its_think_time() -> None:
    # "a1" comes after the independent "b", which arrives long after "a" has ended.
    sender = FakeSender(service_s=0.01)
    requests = [req("a", 0.0), req("b", 0.4), req("a1", 0.2, after="a")]
    await dispatcher(requests, sender).open_loop(time.perf_counter(), SCALE)
    assert set(sender.sent) == {"a", "b", "a1"}
    assert sender.sent["a1"] >= sender.ended["a"] + 0.2 / SCALE


async def test_failed_parent_fails_its_follow_ups_unsent() -> None:
    sender = FakeSender(failing=frozenset({"a"}))
    requests = [req("a", 0.0), req("a1", 0.1, after="a"), req("a2", 0.1, after="a1")]
    requests.append(req("b", 0.01))
    await dispatcher(requests, sender).open_loop(time.perf_counter(), SCALE)
    assert set(sender.sent) == {"a", "b"}
    assert sender.unsent == 2


async def test_closed_loop_keeps_at_most_concurrency_in_flight() -> None:
    sender = FakeSender(service_s=0.01)
    requests = [req(f"r{i}", 100.0 + i) for i in range(10)]  # arrival times are ignored
    requests.insert(1, req("r0-next", 0.4, after="r0"))
    await dispatcher(requests, sender).closed_loop(3)
    assert len(sender.sent) == 11
    assert sender.peak == 3
    assert sender.sent["r0-next"] >= sender.ended["r0"] + 0.4 / SCALE


def test_follow_up_of_an_unknown_request_is_an_error() -> None:
    stream = RequestStream([req("a", 0.0), req("x1", 0.1, after="x")], SCALE)
    with pytest.raises(ValueError, match="x1"):
        stream.next_independent()
