"""Measuring the services a benchmark starts: CPU time from /proc, and child processes that
announce their URL on a ready line."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

from pilothouse.errors import PilothouseError

_TICKS = os.sysconf("SC_CLK_TCK")
_STOP_GRACE_S = 10.0


class BenchError(PilothouseError):
    """A benchmark could not run (a child process failed to start, for example)."""


def _children(pid: int) -> list[int]:
    found: list[int] = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as fh:
                found += [int(c) for c in fh.read().split()]
    except OSError:
        pass  # gone, or a kernel without CONFIG_PROC_CHILDREN: count the process alone
    return found


def _own_cpu_s(pid: int) -> tuple[float, float]:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0, 0.0
    return int(fields[11]) / _TICKS, int(fields[12]) / _TICKS  # utime, stime (fields 14, 15)


def process_tree_cpu(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of ``pid`` and its live descendants."""
    user, system, pending, seen = 0.0, 0.0, [pid], set[int]()
    while pending and len(seen) < 1024:
        current = pending.pop()
        if current in seen:
            continue
        seen.add(current)
        own_user, own_system = _own_cpu_s(current)
        user, system = user + own_user, system + own_system
        pending += _children(current)
    return user, system


def process_tree_cpu_s(pid: int) -> float:
    """User + system CPU seconds of ``pid`` and its live descendants."""
    return sum(process_tree_cpu(pid))


class TreeCpuMeter:
    """Meters for one process tree: ``total`` reads /proc, ``system`` is from that same read.

    Put ``total`` before ``system`` in a meter mapping so both come from one reading.
    """

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self._system = 0.0

    def total(self) -> float:
        user, self._system = process_tree_cpu(self.pid)
        return user + self._system

    def system(self) -> float:
        return self._system


def machine_cpu_s() -> float:
    """Busy CPU seconds of the whole machine, all cores (``/proc/stat``, idle and iowait out)."""
    try:
        with open("/proc/stat") as fh:
            fields = [int(x) for x in fh.readline().split()[1:9]]
    except (OSError, ValueError):
        return 0.0
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields
    return (user + nice + system + irq + softirq + steal) / _TICKS


def self_cpu_s() -> float:
    """User + system CPU seconds of this process (the load generator)."""
    times = os.times()
    return times.user + times.system


class ChildProcess:
    """A service started as a subprocess that announces its URL on a ready line."""

    def __init__(
        self,
        name: str,
        argv: list[str],
        log_dir: Path,
        ready_prefix: str,
        env: dict[str, str] | None = None,
    ) -> None:
        self.name = name
        self._argv = argv
        self._env = env  # None: this process's environment
        self._ready = ready_prefix
        self._out = log_dir / f"{name}.stdout"
        self._err = log_dir / f"{name}.stderr"
        self._proc: asyncio.subprocess.Process | None = None

    @property
    def pid(self) -> int:
        if self._proc is None:
            raise BenchError(f"{self.name} is not running")
        return self._proc.pid

    async def start(self, timeout_s: float) -> str:
        """Start the process and return the URL from its ready line."""
        with self._out.open("wb") as out, self._err.open("wb") as err:
            self._proc = await asyncio.create_subprocess_exec(
                *self._argv, stdout=out, stderr=err, stdin=asyncio.subprocess.DEVNULL,
                env=self._env,
            )  # fmt: skip
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for line in self._out.read_text(errors="replace").splitlines():
                if line.startswith(self._ready):
                    return line[len(self._ready) :].strip()
            if self._proc.returncode is not None:
                raise BenchError(f"{self.name} exited with {self._proc.returncode}: {self._tail()}")
            await asyncio.sleep(0.05)
        raise BenchError(f"{self.name} was not ready within {timeout_s:.0f} s: {self._tail()}")

    async def stop(self) -> None:
        """Terminate, then kill if it lingers; always reaps the process."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), _STOP_GRACE_S)
            except TimeoutError:
                proc.kill()
                await proc.wait()

    def _tail(self) -> str:
        text = self._err.read_text(errors="replace") if self._err.exists() else ""
        return text[-2000:].strip() or "(no output)"
