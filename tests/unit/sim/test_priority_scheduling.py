"""vLLM's ``--scheduling-policy priority`` in the engine model: waiting order and preemption.

vLLM's order: the lowest ``priority`` value is served first, then the earliest arrival; under
KV pressure the running request of the highest value (latest arrival) is preempted first.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from pilothouse.sim import EngineModel, EngineRequest
from pilothouse.sim.config import FCFS, PRIORITY
from pilothouse.sim.sequence import Sequence
from pilothouse.sim.waiting import FcfsQueue, PriorityQueue, wait_queue
from tests.unit.sim.helpers import request, run_until_idle, small_config


def _prio(request_id: str, start: int, priority: int, max_tokens: int = 2) -> EngineRequest:
    base = request(request_id, list(range(start, start + 8)), max_tokens)
    return replace(base, priority=priority)


def _first_token_order(policy: str) -> list[str]:
    """One request at a time (max_num_seqs=1): the order they get their first token."""
    model = EngineModel(small_config(max_num_seqs=1, scheduling_policy=policy))
    model.add_request(_prio("running", 0, 5), 0.0)
    first = model.step(0.0)  # "running" is admitted; the rest queue behind it
    assert first is not None
    model.add_request(_prio("late-low", 100, 3), 0.001)
    model.add_request(_prio("high", 200, -1), 0.002)
    model.add_request(_prio("low", 300, 3), 0.003)
    model.add_request(_prio("default", 400, 0), 0.004)
    results = run_until_idle(model, first.end)
    return [rid for result in results for rid in result.first_tokens]


def test_fcfs_is_the_default_and_ignores_priorities() -> None:
    assert small_config().scheduling_policy == FCFS
    assert _first_token_order(FCFS) == ["late-low", "high", "low", "default"]


def test_priority_policy_serves_the_lowest_value_first_then_arrival() -> None:
    assert _first_token_order(PRIORITY) == ["high", "default", "late-low", "low"]


def _preempted(policy: str) -> list[str]:
    """Two batch requests admitted first, an urgent one after them; then the KV cache runs
    out (16 blocks of 4 tokens: three 19-token prompts take 15, their decodes need more)."""
    config = small_config(
        num_gpu_blocks=16, max_model_len=64, max_num_seqs=4, scheduling_policy=policy
    )
    model = EngineModel(config)
    model.add_request(_long("old-batch", 0, priority=1), 0.0)
    model.add_request(_long("new-batch", 100, priority=1), 0.001)
    first = model.step(0.001)
    assert first is not None
    assert set(first.first_tokens) == {"old-batch", "new-batch"}
    model.add_request(_long("urgent", 200, priority=0), first.end)
    results = run_until_idle(model, first.end)
    return [rid for result in results for rid in result.preempted]


def test_priority_policy_preempts_the_least_important_latest_arrival() -> None:
    preempted = _preempted(PRIORITY)
    assert preempted[:1] == ["new-batch"]
    assert "urgent" not in preempted


def test_fcfs_preempts_the_last_admitted_whatever_its_priority() -> None:
    assert _preempted(FCFS)[0] == "urgent"


def _long(request_id: str, start: int, *, priority: int) -> EngineRequest:
    return replace(request(request_id, list(range(start, start + 19)), 12), priority=priority)


def test_aborting_a_waiting_request_under_priority() -> None:
    model = EngineModel(small_config(max_num_seqs=1, scheduling_policy=PRIORITY))
    for i, priority in enumerate((0, 2, 1)):
        model.add_request(_prio(f"r{i}", 100 * i, priority), 0.0)
    assert model.abort_request("r2", 0.0)
    assert model.num_waiting == 2
    results = run_until_idle(model)
    assert [f.request_id for r in results for f in r.finished] == ["r0", "r1"]


def test_priority_queue_orders_by_priority_arrival_then_insertion() -> None:
    queue = PriorityQueue()
    seqs = [
        Sequence(_prio("b", 0, 1), 1.0),
        Sequence(_prio("a", 0, 1), 0.5),
        Sequence(_prio("c", 0, 0), 2.0),
        Sequence(_prio("d", 0, 1), 0.5),
    ]
    for seq in seqs:
        queue.push(seq)
    assert [s.request_id for s in queue] == ["c", "a", "d", "b"]
    first = queue.pop()
    queue.prepend(first)  # preempted: back to its own place, not the front of everything
    queue.remove(seqs[0])
    assert [queue.pop().request_id for _ in range(len(queue))] == ["c", "a", "d"]
    with pytest.raises(ValueError, match="not waiting"):
        queue.remove(seqs[0])


def test_fcfs_queue_puts_preempted_and_skipped_back_in_front() -> None:
    queue = FcfsQueue()
    a, b, c = (Sequence(_prio(x, 0, 0), 0.0) for x in "abc")
    queue.push(a)
    queue.push(b)
    queue.prepend(c)
    skipped = [queue.pop(), queue.pop()]
    queue.restore(skipped)
    assert [s.request_id for s in queue] == ["c", "a", "b"]


def test_unknown_policy_is_refused() -> None:
    with pytest.raises(ValueError, match="scheduling_policy"):
        small_config(scheduling_policy="lifo")
    with pytest.raises(ValueError, match="known: fcfs, priority"):
        wait_queue("lifo")
