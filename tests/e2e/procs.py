"""Start pilothouse commands as real processes on loopback, and find their children."""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
import subprocess
import sys
import time
from pathlib import Path

READY_PREFIX = "pilothouse is ready: "


def start_until_ready(
    args: list[str], log: Path, timeout_s: float = 180.0, *, new_session: bool = False
) -> tuple[subprocess.Popen[str], str]:
    """Run ``python -m pilothouse ARGS``; return the process and the URL it announces.

    ``new_session`` puts it in a process group of its own, as a shell does for a foreground
    command, so a test can send the group a terminal's Ctrl-C.
    """
    with log.open("w") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "pilothouse", *args],
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
            start_new_session=new_session,
        )
    assert proc.stdout is not None
    selector = selectors.DefaultSelector()
    selector.register(proc.stdout, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not selector.select(timeout=1.0):
            if proc.poll() is not None:
                break
            continue
        line = proc.stdout.readline()
        if line.startswith(READY_PREFIX):
            selector.close()
            return proc, line.removeprefix(READY_PREFIX).strip()
        if not line and proc.poll() is not None:
            break
    selector.close()
    stop(proc)
    raise AssertionError(f"pilothouse {args} did not become ready; log:\n{log.read_text()[-3000:]}")


def children(pid: int) -> list[int]:
    """Direct child pids of ``pid`` (Linux /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            if ppid == pid:
                found.append(int(entry.name))
    return found


def alive(pid: int) -> bool:
    """True if ``pid`` exists and is not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def stop(proc: subprocess.Popen[str], sig: int = signal.SIGTERM, timeout_s: float = 30.0) -> int:
    """Signal ``proc``, wait for it (SIGKILL after ``timeout_s``) and close its pipe."""
    try:
        if proc.poll() is None:
            proc.send_signal(sig)
            try:
                return proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                proc.kill()
        return proc.wait()
    finally:
        if proc.stdout is not None:
            proc.stdout.close()


def kill_quietly(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
