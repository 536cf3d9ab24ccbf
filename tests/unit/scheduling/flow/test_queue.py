"""Table-driven tests of the flow-control queue, in virtual time.

Each case is a script: ``("+", key, tenant, priority, now)`` enqueues and logs what was
shed as ``key:reason``; ``("-",)`` dequeues and logs the key (or ``None``); ``("x", now)``
expires and logs ``key:timed-out``. The log must match exactly.
"""

from __future__ import annotations

import pytest

from pilothouse.scheduling.flow import FlowQueue

Op = tuple[object, ...]


def _run(script: list[Op], max_size: int = 100, timeout_s: float = 60.0) -> list[str | None]:
    queue = FlowQueue(max_size, timeout_s)
    log: list[str | None] = []
    for op in script:
        if op[0] == "+":
            _, key, tenant, priority, now = op
            shed = queue.enqueue(str(key), tenant=str(tenant), priority=int(priority), now=now)  # type: ignore[call-overload]
            log += [f"{s.item.key}:{s.reason}" for s in shed]
        elif op[0] == "-":
            item = queue.dequeue()
            log.append(None if item is None else item.key)
        else:
            log += [f"{s.item.key}:{s.reason}" for s in queue.expire(float(op[1]))]  # type: ignore[arg-type]
    return log


def _enqueue(keys: str, tenant: str = "t", priority: int = 0, now: float = 0.0) -> list[Op]:
    return [("+", key, tenant, priority, now) for key in keys.split()]


def _dequeue(n: int) -> list[Op]:
    return [("-",)] * n


SIZE = 4  # every script runs on a queue of 4 that times out after 10 s


@pytest.mark.parametrize(
    ("script", "log"),
    [
        pytest.param(_dequeue(1), [None], id="empty"),
        pytest.param(
            _enqueue("a") + _enqueue("b", priority=5) + _enqueue("c", priority=1) + _dequeue(4),
            ["b", "c", "a", None],
            id="priority-order",
        ),
        pytest.param(
            _enqueue("a b c") + _dequeue(3),
            ["a", "b", "c"],
            id="fifo-within-a-tenant",
        ),
        pytest.param(
            _enqueue("x", priority=-3) + _enqueue("y") + _dequeue(2),
            ["y", "x"],
            id="negative-priority-last",
        ),
        pytest.param(
            _enqueue("a1 a2", "noisy")
            + _enqueue("b1", "quiet")
            + _enqueue("c1", "calm")
            + _dequeue(4),
            ["a1", "b1", "c1", "a2"],
            id="round-robin-across-tenants",
        ),
        pytest.param(
            _enqueue("a1 a2 a3", "noisy") + _dequeue(1) + _enqueue("b1", "quiet") + _dequeue(3),
            ["a1", "a2", "b1", "a3"],
            id="late-tenant-joins-the-end-of-the-rotation",
        ),
        pytest.param(
            _enqueue("low1", "a", 0)
            + _enqueue("hi1 hi2", "b", 5)
            + _enqueue("low2", "a", 0)
            + _enqueue("hi3", "b", 5)
            + _dequeue(4),
            ["low2:evicted", "hi1", "hi2", "hi3", "low1"],
            id="full-queue-evicts-the-lowest-priority-newest",
        ),
        pytest.param(
            _enqueue("hi1 hi2 hi3 hi4", "b", 5) + _enqueue("low", "a", 0) + _dequeue(1),
            ["low:queue-full", "hi1"],
            id="lowest-newcomer-is-shed",
        ),
        pytest.param(
            _enqueue("a1 a2 a3 a4", "noisy")
            + _enqueue("b1", "quiet")
            + _enqueue("b2", "quiet")
            + _enqueue("b3", "quiet")
            + _dequeue(4),
            ["a4:evicted", "a3:evicted", "b3:queue-full", "a1", "b1", "a2", "b2"],
            id="quiet-tenant-displaces-noisy-tenant",
        ),
        pytest.param(
            _enqueue("a1 a2", "a") + _enqueue("b1 b2", "b") + _enqueue("a3", "a") + _dequeue(4),
            ["a3:queue-full", "a1", "b1", "a2", "b2"],
            id="equal-shares-do-not-ping-pong",
        ),
        pytest.param(
            _enqueue("a", now=0.0)
            + _enqueue("b", "u", now=5.0)
            + [("x", 9.9), ("x", 10.0)]
            + _dequeue(2),
            ["a:timed-out", "b", None],
            id="timeout",
        ),
        pytest.param(
            _enqueue("a", now=0.0) + _dequeue(1) + [("x", 100.0)],
            ["a"],
            id="dispatched-requests-never-time-out",
        ),
    ],
)
def test_script(script: list[Op], log: list[str | None]) -> None:
    assert _run(script, max_size=SIZE, timeout_s=10.0) == log


def test_zero_size_sheds_everything() -> None:
    assert _run(_enqueue("a b"), max_size=0) == ["a:queue-full", "b:queue-full"]


def test_noisy_tenant_cannot_starve_a_quiet_one() -> None:
    queue = FlowQueue(max_size=1000, timeout_s=60.0)
    for i in range(500):
        queue.enqueue(f"noisy{i}", tenant="noisy", priority=0, now=0.0)
    queue.enqueue("quiet", tenant="quiet", priority=0, now=1.0)
    order = [queue.dequeue() for _ in range(3)]
    assert [item.key for item in order if item is not None] == ["noisy0", "quiet", "noisy1"]


def test_remove_and_deadlines() -> None:
    queue = FlowQueue(max_size=10, timeout_s=5.0)
    queue.enqueue("a", tenant="t", priority=0, now=1.0)
    queue.enqueue("b", tenant="t", priority=0, now=2.0)
    assert queue.next_deadline() == 6.0
    removed = queue.remove("a")
    assert removed is not None
    assert removed.key == "a"
    assert queue.remove("a") is None
    assert ("a" in queue, "b" in queue, len(queue)) == (False, True, 1)
    assert queue.next_deadline() == 7.0
    assert queue.expire(6.5) == []
    assert queue.depth(0) == 1


def test_many_dispatches_keep_the_deadline_heap_bounded() -> None:
    queue = FlowQueue(max_size=10, timeout_s=1e9)
    for i in range(10_000):
        queue.enqueue(str(i), tenant="t", priority=0, now=float(i))
        assert queue.dequeue() is not None
    queue.enqueue("last", tenant="t", priority=0, now=1.0)
    queue.remove("last")
    assert len(queue._deadlines) <= 64 + 2  # dead entries are compacted away


def test_duplicate_key_is_an_error() -> None:
    queue = FlowQueue(max_size=10, timeout_s=5.0)
    queue.enqueue("a", tenant="t", priority=0, now=0.0)
    with pytest.raises(ValueError, match="already queued"):
        queue.enqueue("a", tenant="t", priority=0, now=0.0)


@pytest.mark.parametrize(("max_size", "timeout_s"), [(-1, 1.0), (1, 0.0)])
def test_bad_construction(max_size: int, timeout_s: float) -> None:
    with pytest.raises(ValueError, match="must be"):
        FlowQueue(max_size, timeout_s)
