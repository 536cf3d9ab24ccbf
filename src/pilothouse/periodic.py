"""A background loop that calls ``tick()`` every ``interval_s`` seconds until stopped.

The gateway's data producers (the endpoint monitor, the LoRA adapter watcher) are such
loops: ``await tick()`` once before serving, ``start()`` the loop, ``await stop()`` on the
way out. A tick that raises ends the loop and is logged, as any unhandled task error.
"""

from __future__ import annotations

import asyncio


class PeriodicTask:
    """Subclasses implement :meth:`tick`; ``interval_s`` is the pause between two ticks."""

    def __init__(self, interval_s: float, name: str) -> None:
        self._interval = interval_s
        self._name = name
        self._task: asyncio.Task[None] | None = None

    async def tick(self) -> None:
        raise NotImplementedError

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=self._name)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _run(self) -> None:
        while True:
            await self.tick()
            await asyncio.sleep(self._interval)
