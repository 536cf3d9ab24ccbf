"""A throwaway ``redis-server`` on loopback, for tests of what pilothouse keeps in Redis.

Real Redis rather than a fake: the shared limits and budgets are Lua scripts, and only the
real server runs them with its own atomicity, expiry and ``TIME``. :class:`RedisServer`
starts one on a free 127.0.0.1 port, in a temporary directory, without persistence
(``--save ''``, no append-only file), and stops it on exit. :meth:`RedisServer.stop` and
:meth:`RedisServer.start` may also be called in between, to test an outage: the server
comes back on the same port, empty.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

_FALLBACKS = ("/usr/bin/redis-server", "/usr/local/bin/redis-server", "/usr/sbin/redis-server")


def find_redis_server() -> str:
    """The ``redis-server`` on PATH, else in the usual system places."""
    found = shutil.which("redis-server")
    if found is not None:
        return found
    for candidate in _FALLBACKS:
        if Path(candidate).is_file():
            return candidate
    raise FileNotFoundError(
        "redis-server not found on PATH nor in /usr/bin: install it (apt-get install "
        "redis-server) to run the Redis tests"
    )


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as conn:
            conn.sendall(b"PING\r\n")
            return conn.recv(16).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    """``with RedisServer() as redis: ... redis.url ...`` (see the module docstring)."""

    def __init__(self, binary: str | None = None, startup_timeout_s: float = 10.0) -> None:
        self.binary = binary or find_redis_server()
        self.startup_timeout_s = startup_timeout_s
        self.port = 0
        self._dir: tempfile.TemporaryDirectory[str] | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def __enter__(self) -> RedisServer:
        self._dir = tempfile.TemporaryDirectory(prefix="pilothouse-redis-")
        try:
            self.start()
        except BaseException:
            self._dir.cleanup()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None

    def start(self) -> None:
        """Start the server: on a free port the first time, on the same port after stop."""
        if self._dir is None:
            raise RuntimeError("use RedisServer as a context manager")
        if self._proc is not None:
            return
        tries = 1 if self.port else 3  # another process may take a probed port first
        for attempt in range(tries):
            port = self.port or _free_port()
            if self._launch(port, last=attempt == tries - 1):
                self.port = port
                return

    def stop(self) -> None:
        """Stop the server (its data is gone: nothing is persisted)."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def _launch(self, port: int, *, last: bool) -> bool:
        assert self._dir is not None
        workdir = Path(self._dir.name)
        log = workdir / "redis.log"
        command = [
            self.binary,
            *("--port", str(port), "--bind", "127.0.0.1", "--save", ""),
            *("--appendonly", "no", "--dir", str(workdir), "--daemonize", "no"),
            *("--logfile", str(log)),
        ]
        proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + self.startup_timeout_s
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                break
            if _answers(port):
                self._proc = proc
                return True
            time.sleep(0.02)
        proc.kill()
        proc.wait()
        if not last:
            return False
        tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
        raise RuntimeError(f"redis-server did not start on 127.0.0.1:{port}:\n{tail}")
