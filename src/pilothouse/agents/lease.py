"""Which process drives a run: a lease in the store, so that no two processes drive one run.

Two processes driving the same run (``agent runs resume`` typed while the agents service
still runs it, or two services picking it up) would each call the model and repeat tool
calls with side effects. So a run is driven under its lease (``agent_runs.lease_owner``,
``lease_until``): taken when the run starts or resumes, renewed every third of
:data:`LEASE_S` while it runs, let go when it stops (finished, waiting for a person, failed,
interrupted). A process that tries to drive a run someone holds is refused with
:class:`~pilothouse.errors.RunInProgress` before it does or records anything.

A process that dies holding a lease holds it until the lease ends (:data:`LEASE_S` after
its last renewal), except where it ran on this host: a holder whose process is gone is
known dead and replaced at once (``kill -9`` of ``pilothouse up``'s agents, then ``agent
runs resume``, goes on without waiting).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
from collections.abc import Callable
from types import TracebackType

from pilothouse.errors import PilothouseError, RunInProgress
from pilothouse.governance.agent_runs import RunBook

log = logging.getLogger("pilothouse.agents")

LEASE_S = 30.0
"""How long a lease lasts unless renewed: the longest a crashed process on another host
keeps its runs from being resumed."""


def process_owner() -> str:
    """An owner name for this process: ``host:pid:nonce`` (the nonce tells apart two
    runtimes of one process, and a pid the system gave again)."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


def dead_here(owner: str) -> bool:
    """Whether ``owner`` names a process of this host that no longer exists."""
    host, _, rest = owner.partition(":")
    pid_text = rest.partition(":")[0]
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # someone else's process: alive
        return False
    return False


class RunLease:
    """``async with RunLease(book, run_id, owner, wall):`` drive the run while holding it."""

    def __init__(
        self,
        book: RunBook,
        run_id: str,
        owner: str,
        wall: Callable[[], float],
        lease_s: float = LEASE_S,
    ) -> None:
        self.book = book
        self.run_id = run_id
        self.owner = owner
        self.wall = wall
        self.lease_s = lease_s
        self._renewing: asyncio.Task[None] | None = None

    async def __aenter__(self) -> RunLease:
        await self._take()
        self._renewing = asyncio.get_running_loop().create_task(self._renew())
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        if self._renewing is not None:
            self._renewing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._renewing
        try:
            await asyncio.to_thread(self.book.drop_lease, self.run_id, self.owner)
        except PilothouseError as exc:  # the store is away: the lease runs out by itself
            log.warning("run %s: could not let go of its lease: %s", self.run_id, exc)

    async def _take(self) -> None:
        now = self.wall()
        until = now + self.lease_s
        holder = await asyncio.to_thread(self.book.take_lease, self.run_id, self.owner, now, until)
        if holder is not None and dead_here(holder[0]):
            dead = holder[0]
            holder = await asyncio.to_thread(
                self.book.take_lease, self.run_id, self.owner, now, until, replacing=dead
            )
            if holder is None:
                log.info("run %s: taken over from %s, a process that is gone", self.run_id, dead)
        if holder is not None:
            owner, ends = holder
            raise RunInProgress(
                f"run {self.run_id} is being run by another process ({owner}); nothing was "
                f"done. If that process stopped, its hold ends in {max(0.0, ends - now):.0f} s:"
                " resume the run then"
            )

    async def _renew(self) -> None:
        while True:
            await asyncio.sleep(self.lease_s / 3)
            now = self.wall()
            try:
                holder = await asyncio.to_thread(
                    self.book.take_lease, self.run_id, self.owner, now, now + self.lease_s
                )
            except PilothouseError as exc:  # the store is away: try again next time
                log.warning("run %s: could not renew its lease: %s", self.run_id, exc)
                continue
            if holder is not None:
                log.error(
                    "run %s: its lease went to %s (this process stalled past it); two "
                    "processes may now drive the run",
                    self.run_id,
                    holder[0],
                )
