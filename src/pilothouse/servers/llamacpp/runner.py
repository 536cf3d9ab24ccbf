"""Run llama.cpp generations one at a time in a worker thread, with exact token counts.

llama-cpp-python's own server does not send usage in streams; this runner counts tokens as
llama.cpp samples them (a logits processor sees the context before every sampled token) and
lets a client that went away stop its generation between two tokens, streamed or not:
:meth:`TokenCount.cancel` makes the logits processor leave end-of-generation as the only
choice, and a stream's producer also stops iterating llama.cpp's generator and closes it.

The slot (one generation at a time) is held until the worker thread has returned, not
until the awaiting handler has: a handler cancelled mid-generation cannot let a second
generation into the same llama.cpp context while the first is still running there.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncGenerator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt


@dataclass(slots=True)
class TokenCount:
    """Filled in by llama.cpp's sampling callbacks while a generation runs."""

    eos_token: int
    prompt_tokens: int = 0
    steps: int = 0
    cancelled: threading.Event = field(default_factory=threading.Event)

    def on_logits(self, input_ids: npt.NDArray[np.intc], scores: npt.NDArray[np.single]) -> Any:
        if self.steps == 0:
            self.prompt_tokens = len(input_ids)
        self.steps += 1
        if self.cancelled.is_set():
            # The client went away: leave end-of-generation as the only choice, so llama.cpp
            # stops at the next token through its normal path.
            scores[:] = -np.inf
            scores[self.eos_token] = 0.0
        return scores

    def cancel(self) -> None:
        """The client went away: stop generating at the next token (any thread)."""
        self.cancelled.set()

    def completion_tokens(self, finish_reason: str | None) -> int:
        # The last sampled token of a natural stop is end-of-generation, not output.
        return self.steps if finish_reason == "length" else max(0, self.steps - 1)


_DONE = object()


class SerialRunner:
    """One llama.cpp context, one generation at a time, waiting requests in FIFO order.

    ``sampled_tokens`` (tokens llama.cpp sampled, all requests) and ``cancelled``
    (generations stopped early because their client left) count finished generations.
    """

    def __init__(self) -> None:
        self._lock = asyncio.Lock()
        self.waiting = 0
        self.running = 0
        self.sampled_tokens = 0
        self.cancelled = 0

    async def run(self, work: Callable[[], Any], count: TokenCount) -> Any:
        """``work()`` in a worker thread; a cancelled caller cancels ``count`` too."""
        worker = await self._launch(work, count)
        try:
            return await asyncio.shield(worker)
        except asyncio.CancelledError:
            count.cancel()
            raise

    async def stream(
        self, start: Callable[[], Iterator[Any]], count: TokenCount
    ) -> AsyncGenerator[Any, None]:
        """Items of a generator built by ``start``, produced in a worker thread.

        Leaving early (``aclose()``, cancellation, an error) cancels the generation.
        """
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Any] = asyncio.Queue()

        def produce() -> None:
            try:
                _drain(start, count, lambda item: loop.call_soon_threadsafe(queue.put_nowait, item))
            except Exception as exc:  # handed to the consumer and re-raised there
                loop.call_soon_threadsafe(queue.put_nowait, exc)
            loop.call_soon_threadsafe(queue.put_nowait, _DONE)

        await self._launch(produce, count)
        finished = False
        try:
            while (item := await queue.get()) is not _DONE:
                if isinstance(item, Exception):
                    raise item
                yield item
            finished = True
        finally:
            if not finished:
                count.cancel()

    async def _launch(self, work: Callable[[], Any], count: TokenCount) -> asyncio.Future[Any]:
        """Take the slot, start ``work`` in a thread; the slot frees when the thread ends."""
        self.waiting += 1
        try:
            await self._lock.acquire()
        finally:
            self.waiting -= 1
        self.running += 1
        worker = asyncio.ensure_future(asyncio.to_thread(work))
        worker.add_done_callback(lambda done: self._release(done, count))
        return worker

    def _release(self, worker: asyncio.Future[Any], count: TokenCount) -> None:
        if not worker.cancelled():
            # Marks an error as seen: a caller still waiting gets it from run(); one that
            # was cancelled (its client left) has nobody left to tell.
            worker.exception()
        self.running -= 1
        self.sampled_tokens += count.steps
        self.cancelled += count.cancelled.is_set()
        self._lock.release()


def _drain(
    start: Callable[[], Iterator[Any]], count: TokenCount, put: Callable[[Any], Any]
) -> None:
    """Hand each item of ``start()`` to ``put`` until it ends or ``count`` is cancelled."""
    generator = start()
    try:
        for item in generator:
            if count.cancelled.is_set():
                break
            put(item)
    finally:
        close = getattr(generator, "close", None)
        if close is not None:
            close()
