"""Run llama.cpp generations one at a time in a worker thread, with exact token counts.

llama-cpp-python's own server does not send usage in streams; this runner counts tokens as
llama.cpp samples them (a logits processor sees the context before every sampled token) and
lets a client disconnect stop generation between tokens.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable, Iterator
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

    def completion_tokens(self, finish_reason: str | None) -> int:
        # The last sampled token of a natural stop is end-of-generation, not output.
        return self.steps if finish_reason == "length" else max(0, self.steps - 1)


_DONE = object()


class SerialRunner:
    """One llama.cpp context, one generation at a time, waiting requests in FIFO order."""

    def __init__(self) -> None:
        self._lock = asyncio.Lock()
        self.waiting = 0
        self.running = 0

    async def run(self, work: Callable[[], Any]) -> Any:
        async with self._slot():
            return await asyncio.to_thread(work)

    async def stream(
        self, start: Callable[[], Iterator[Any]], count: TokenCount
    ) -> AsyncIterator[Any]:
        """Items of a generator built by ``start``, produced in a worker thread."""
        async with self._slot():
            loop = asyncio.get_running_loop()
            queue: asyncio.Queue[Any] = asyncio.Queue()

            def produce() -> None:
                try:
                    for item in start():
                        loop.call_soon_threadsafe(queue.put_nowait, item)
                except Exception as exc:  # handed to the consumer and re-raised there
                    loop.call_soon_threadsafe(queue.put_nowait, exc)
                loop.call_soon_threadsafe(queue.put_nowait, _DONE)

            worker = asyncio.ensure_future(asyncio.to_thread(produce))
            try:
                while (item := await queue.get()) is not _DONE:
                    if isinstance(item, Exception):
                        raise item
                    yield item
            finally:
                count.cancelled.set()
                await worker

    def _slot(self) -> _Slot:
        return _Slot(self)


class _Slot:
    def __init__(self, runner: SerialRunner) -> None:
        self._runner = runner

    async def __aenter__(self) -> None:
        self._runner.waiting += 1
        try:
            await self._runner._lock.acquire()
        finally:
            self._runner.waiting -= 1
        self._runner.running += 1

    async def __aexit__(self, *exc: object) -> None:
        self._runner.running -= 1
        self._runner._lock.release()
