"""The llama.cpp serial runner frees the model only once a generation has really ended."""

from __future__ import annotations

import asyncio
import itertools
import threading
from collections.abc import Callable, Iterator

import numpy as np

from pilothouse.servers.llamacpp.runner import SerialRunner, TokenCount

WAIT_S = 30.0  # generous: how long a condition may take to become true


async def until(condition: Callable[[], bool], what: str) -> None:
    """Wait (generously) for ``condition()`` to hold."""
    for _ in range(int(WAIT_S / 0.01)):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{what} did not happen within {WAIT_S:.0f}s")


def counting(closed: threading.Event, teardown: threading.Event) -> Iterator[int]:
    """A generation that runs until the test ends; ``closed`` is set when it is closed."""
    try:
        for item in itertools.count():
            if teardown.is_set():
                return
            yield item
    finally:
        closed.set()


async def test_leaving_a_stream_stops_and_closes_the_generation() -> None:
    runner, count, closed = SerialRunner(), TokenCount(eos_token=0), threading.Event()
    teardown = threading.Event()
    chunks = runner.stream(lambda: counting(closed, teardown), count)
    try:
        assert await anext(chunks) == 0
        assert runner.running == 1
        await asyncio.wait_for(chunks.aclose(), WAIT_S)  # the client went away
        assert count.cancelled.is_set()
        await until(lambda: runner.running == 0, "the slot freeing")
        assert closed.is_set()
        assert runner.cancelled == 1
    finally:
        teardown.set()


async def test_a_stream_read_to_the_end_is_not_cancelled() -> None:
    runner, count = SerialRunner(), TokenCount(eos_token=0)
    items = [item async for item in runner.stream(lambda: iter(range(3)), count)]
    assert items == [0, 1, 2]
    await until(lambda: runner.running == 0, "the slot freeing")
    assert not count.cancelled.is_set()
    assert runner.cancelled == 0


async def test_a_cancelled_caller_holds_the_slot_until_its_generation_ends() -> None:
    runner, count, release = SerialRunner(), TokenCount(eos_token=0), threading.Event()
    first = asyncio.ensure_future(runner.run(release.wait, count))
    await until(lambda: runner.running == 1, "the first generation starting")
    first.cancel()  # the client went away: llama.cpp is still busy with its generation
    await asyncio.gather(first, return_exceptions=True)
    assert count.cancelled.is_set()
    second = asyncio.ensure_future(runner.run(lambda: "second", TokenCount(eos_token=0)))
    await until(lambda: runner.waiting == 1, "the second request queueing")
    await asyncio.sleep(0.1)
    assert runner.waiting == 1  # not let into a llama.cpp context that is still busy
    assert not second.done()
    release.set()
    assert await second == "second"
    assert runner.cancelled == 1


def test_a_cancelled_count_leaves_end_of_generation_as_the_only_choice() -> None:
    count = TokenCount(eos_token=2)
    scores = np.zeros(5, dtype=np.single)
    count.on_logits(np.arange(7, dtype=np.intc), scores)
    assert count.prompt_tokens == 7
    assert scores.tolist() == [0.0] * 5
    count.cancel()
    count.on_logits(np.arange(8, dtype=np.intc), scores)
    assert int(np.argmax(scores)) == 2
    assert np.isinf(scores[[0, 1, 3, 4]]).all()
    assert count.steps == 2
