"""The fleet's own services beside the replicas: the tool gateway and the agents.

``pilothouse up`` runs them as child processes (``python -m pilothouse toolgateway -f FILE``,
``python -m pilothouse agent serve -f FILE``), so a tool call or an agent loop never takes
event-loop time from the gateway's request path, and each can be stopped, restarted and read
on its own. A service is up once it prints ``pilothouse is ready: URL`` on stdout (the line
every pilothouse server prints); its output goes to ``<log_dir>/<name>.log``.

A service that exits before it is ready is an :class:`~pilothouse.errors.EngineError` naming
its log's last lines, so ``pilothouse up`` stops with the reason instead of serving a fleet
whose agents cannot call their tools. Once up, a service that exits on its own is restarted
(:meth:`Services.supervise`) with the replicas' backoff (``local.restart_backoff_s``,
doubling up to ``local.restart_backoff_max_s``; one that ran ``local.restart_reset_s``
forgets its earlier crashes), on the port it had, so its URL stays valid for its callers.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import BinaryIO
from urllib.parse import urlsplit

from pilothouse.config.deploy import LocalSpec
from pilothouse.controlplane.reconcile import restart_delay
from pilothouse.controlplane.replicas import die_with_parent
from pilothouse.errors import EngineError

READY_PREFIX = "pilothouse is ready: "


@dataclass(frozen=True, slots=True)
class ServiceCommand:
    """One service to start: its name (and log file's), the pilothouse CLI arguments."""

    name: str
    args: Sequence[str]
    env: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class Service:
    command: ServiceCommand
    process: asyncio.subprocess.Process
    log_path: Path
    url: str = ""

    @property
    def name(self) -> str:
        return self.command.name


def _child_setup() -> None:  # runs in the child between fork and exec
    os.setpgid(0, 0)  # Ctrl-C reaches `up` only; it stops the services itself
    die_with_parent()


class Services:
    """Start services, wait until each is ready, stop them all (SIGTERM, then SIGKILL)."""

    def __init__(self, log_dir: Path, stop_grace_s: float = 10.0) -> None:
        self.log_dir = log_dir
        self.stop_grace_s = stop_grace_s
        self.running: list[Service] = []

    async def start(self, command: ServiceCommand, ready_timeout_s: float) -> Service:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_dir / f"{command.name}.log"
        log = log_path.open("ab")
        log.write(f"--- {time.strftime('%H:%M:%S')} starting {command.name}\n".encode())
        log.flush()
        try:
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "pilothouse", *command.args,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=log,
                env={**os.environ, **command.env},
                preexec_fn=_child_setup,
            )  # fmt: skip
        except OSError as exc:
            log.close()
            raise EngineError(f"cannot start {command.name}: {exc}") from exc
        service = Service(command, process, log_path)
        self.running.append(service)
        try:
            service.url = await asyncio.wait_for(_ready_line(process, log), ready_timeout_s)
        except TimeoutError as exc:
            await self._end(service)
            raise EngineError(
                f"{command.name} was not ready after {ready_timeout_s:g} s; log: {log_path}"
            ) from exc
        except EOFError as exc:
            await self._end(service)
            raise EngineError(
                f"{command.name} exited with status {process.returncode} before it was ready:"
                f"\n{_tail(log_path)}\n(log: {log_path})"
            ) from exc
        return service

    async def supervise(
        self,
        service: Service,
        local: LocalSpec,
        ready_timeout_s: float,
        say: Callable[[str], None],
    ) -> None:
        """Restart ``service`` whenever it exits on its own, until cancelled (``stop`` cancels
        nothing: cancel this first). ``say`` tells the operator what happened."""
        command = pinned(service.command, service.url)
        restarts = 0
        current: Service | None = service
        started = time.monotonic()
        why = ""
        while True:
            if current is not None:
                code = await current.process.wait()
                self.running.remove(current)
                if time.monotonic() - started >= local.restart_reset_s:
                    restarts = 0
                why = f"exited with status {code}"
            delay = restart_delay(restarts, local)
            restarts += 1
            say(f"{command.name} {why}; restarting it in {delay:g} s (log: {service.log_path})")
            await asyncio.sleep(delay)
            started = time.monotonic()
            try:
                current = await self.start(command, ready_timeout_s)
            except EngineError as exc:
                current, why = None, f"did not start again ({exc})"
            else:
                say(f"{command.name} ready again on {current.url}")

    async def _end(self, service: Service) -> None:
        """Stop a service that failed to start, and forget it."""
        process = service.process
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
        await process.wait()
        self.running.remove(service)

    async def stop(self) -> None:
        """Stop every running service, newest first."""
        for service in reversed(self.running):
            process = service.process
            if process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    process.send_signal(signal.SIGTERM)
                try:
                    await asyncio.wait_for(process.wait(), self.stop_grace_s)
                except TimeoutError:
                    with contextlib.suppress(ProcessLookupError):
                        process.kill()
                    await process.wait()
        self.running.clear()

    def exited(self) -> list[Service]:
        return [s for s in self.running if s.process.returncode is not None]


def pinned(command: ServiceCommand, url: str) -> ServiceCommand:
    """``command`` with its ``--port`` set to the port ``url`` is served on: a service
    started on port 0 comes back on the port its callers were given."""
    port = urlsplit(url).port
    args = list(command.args)
    if port is None or "--port" not in args[:-1]:
        return command
    args[args.index("--port") + 1] = str(port)
    return replace(command, args=args)


async def _ready_line(process: asyncio.subprocess.Process, log: BinaryIO) -> str:
    """Copy the child's stdout to its log until the ready line; then keep copying."""
    assert process.stdout is not None
    stdout = process.stdout
    while True:
        line = await stdout.readline()
        if not line:
            raise EOFError
        _write(log, line)
        text = line.decode(errors="replace").strip()
        if text.startswith(READY_PREFIX):
            asyncio.get_running_loop().create_task(_copy(stdout, log))
            return text.removeprefix(READY_PREFIX)


async def _copy(stdout: asyncio.StreamReader, log: BinaryIO) -> None:
    while line := await stdout.readline():
        _write(log, line)
    log.close()


def _write(log: BinaryIO, line: bytes) -> None:
    if not log.closed:
        log.write(line)
        log.flush()


def _tail(path: Path, lines: int = 12) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join(text[-lines:])
