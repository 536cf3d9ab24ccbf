"""A throwaway PostgreSQL server on loopback, for tests that need a real one.

``initdb`` a cluster in a fresh temporary directory, ``pg_ctl start`` it on a free
127.0.0.1 port (trust authentication, no fsync: nothing here outlives the test), and remove
it all on exit. :meth:`PostgresServer.stop` and :meth:`PostgresServer.start` may be called
in the middle of a test to simulate an outage: the server comes back on the same port with
the same data, so URLs handed out before stay valid.

PostgreSQL refuses to run as root, so as root the server runs as the ``postgres`` user
(``runuser``), which also owns the temporary directory. The binaries are found through
``pg_config --bindir``, then ``/usr/lib/postgresql/<version>/bin`` (Debian), then ``PATH``.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path
from types import TracebackType

SERVER_USER = "postgres"
START_TIMEOUT_S = 60


def find_bindir() -> Path | None:
    """The directory holding ``initdb`` and ``pg_ctl``, or None when PostgreSQL is absent."""
    candidates: list[Path] = []
    pg_config = shutil.which("pg_config")
    if pg_config:
        done = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=False)
        if done.returncode == 0:
            candidates.append(Path(done.stdout.strip()))
    candidates += sorted(
        Path("/usr/lib/postgresql").glob("*/bin"),
        key=lambda p: _version_key(p.parent.name),
        reverse=True,
    )
    initdb = shutil.which("initdb")
    if initdb:
        candidates.append(Path(initdb).resolve().parent)
    for candidate in candidates:
        if (candidate / "initdb").is_file() and (candidate / "pg_ctl").is_file():
            return candidate
    return None


def _version_key(name: str) -> tuple[int, ...]:
    return tuple(int(part) for part in name.split(".") if part.isdigit())


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PostgresServer:
    """One PostgreSQL cluster in a temporary directory; a context manager.

    ``with PostgresServer() as pg: url = pg.url()`` — a superuser ``postgres`` with trust
    authentication, database ``postgres``; :meth:`create_database` makes more.
    """

    def __init__(self, bindir: Path | None = None, port: int | None = None) -> None:
        found = bindir or find_bindir()
        if found is None:
            raise RuntimeError(
                "PostgreSQL is not installed (no initdb/pg_ctl): run `make setup` or "
                "apt-get install postgresql"
            )
        self.bindir = found
        self.port = port or free_port()
        self._root: Path | None = None
        self._running = False

    @property
    def running(self) -> bool:
        return self._running

    @property
    def data_dir(self) -> Path:
        return self._dir() / "data"

    @property
    def log_file(self) -> Path:
        return self._dir() / "server.log"

    def url(self, database: str = "postgres") -> str:
        """SQLAlchemy URL (psycopg 3) of ``database`` on this server."""
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def dsn(self, database: str = "postgres") -> str:
        """libpq connection string, for psycopg directly."""
        return f"host=127.0.0.1 port={self.port} user=postgres dbname={database}"

    def start(self) -> None:
        """Create the cluster on first use, then start the server and wait until it is ready."""
        if self._running:
            return
        if self._root is None:
            self._init()
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -c fsync=off "
            f"-c unix_socket_directories={self._dir()}"
        )
        self._pg_ctl(
            "start", "-w", "-t", str(START_TIMEOUT_S), "-l", str(self.log_file), "-o", options
        )
        self._running = True

    def stop(self) -> None:
        """Stop the server (fast shutdown: open sessions are cut); the data stays."""
        if not self._running:
            return
        self._pg_ctl("stop", "-w", "-m", "fast")
        self._running = False

    def create_database(self, name: str) -> str:
        """A new empty database; its SQLAlchemy URL."""
        import psycopg
        from psycopg import sql

        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.url(name)

    def close(self) -> None:
        """Stop the server and delete its directory."""
        try:
            self.stop()
        finally:
            if self._root is not None:
                shutil.rmtree(self._root, ignore_errors=True)
                self._root = None

    def __enter__(self) -> PostgresServer:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _dir(self) -> Path:
        if self._root is None:
            raise RuntimeError("the PostgreSQL server has not been started")
        return self._root

    def _init(self) -> None:
        root = Path(tempfile.mkdtemp(prefix="pilothouse-pg-"))
        self._root = root
        if os.geteuid() == 0:
            user = pwd.getpwnam(SERVER_USER)
            os.chown(root, user.pw_uid, user.pw_gid)
        self._run(
            [
                str(self.bindir / "initdb"),
                "-D",
                str(self.data_dir),
                "-U",
                "postgres",
                "--auth=trust",
                "--encoding=UTF8",
                "--no-locale",
                "--no-sync",
            ]
        )

    def _pg_ctl(self, *args: str) -> None:
        self._run([str(self.bindir / "pg_ctl"), "-D", str(self.data_dir), *args])

    def _run(self, argv: list[str]) -> None:
        if os.geteuid() == 0:
            argv = ["runuser", "-u", SERVER_USER, "--", *argv]
        out = self._dir() / "commands.out"
        with out.open("ab") as sink:  # pg_ctl's postmaster must not inherit our pipes
            done = subprocess.run(
                argv,
                stdout=sink,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, "LC_ALL": "C"},
                check=False,
                timeout=START_TIMEOUT_S + 30,
            )
        if done.returncode != 0:
            log = self.log_file.read_text(errors="replace") if self.log_file.exists() else ""
            tail = (out.read_text(errors="replace") + log)[-2000:]
            raise RuntimeError(f"{' '.join(argv[-3:])} failed ({done.returncode}):\n{tail}")
