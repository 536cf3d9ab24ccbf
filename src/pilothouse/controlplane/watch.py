"""``pilothouse up -f FILE`` follows its file: a changed file is validated and applied.

The file's modification time and size are polled every ``local.watch_interval_s``; a change
is read once the file has stayed the same for ``local.watch_debounce_s`` (an editor that
writes in several steps is read once). A file that no longer reads or validates (not UTF-8,
not YAML, a bad field) is not applied, nor is a spec the executor refuses (an engine whose
prerequisites are missing): every problem is logged, with its field path where it has one,
the fleet keeps running on the last good spec, and the watch goes on.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from pathlib import Path

from pilothouse.clock import Clock, SystemClock
from pilothouse.config.deploy import LocalSpec
from pilothouse.config.fleet import FleetSpec, load_fleet
from pilothouse.controlplane.changes import ApplyReport
from pilothouse.errors import ConfigError, PilothouseError

log = logging.getLogger("pilothouse.watch")
Stamp = tuple[int, int] | None


class ChangeDetector:
    """Debounced change detection over (mtime, size) stamps; pure, clock-injected."""

    def __init__(self, initial: Stamp, debounce_s: float) -> None:
        self._applied = initial
        self._seen = initial
        self._since = 0.0
        self._debounce = debounce_s

    def observe(self, stamp: Stamp, now: float) -> bool:
        """True once a stamp other than the last applied one has held for the debounce."""
        if stamp != self._seen:
            self._seen, self._since = stamp, now
            return False
        if stamp is None or stamp == self._applied or now - self._since < self._debounce:
            return False
        self._applied = stamp
        return True


def stamp(path: Path) -> Stamp:
    try:
        info = os.stat(path)
    except OSError:
        return None
    return (info.st_mtime_ns, info.st_size)


async def watch_spec(
    path: Path,
    local: LocalSpec,
    apply: Callable[[FleetSpec], ApplyReport],
    clock: Clock | None = None,
) -> None:
    """Apply ``path`` each time it changes, until cancelled."""
    clock = clock or SystemClock()
    detector = ChangeDetector(stamp(path), local.watch_debounce_s)
    while True:
        await asyncio.sleep(local.watch_interval_s)
        if not detector.observe(stamp(path), clock.now()):
            continue
        try:
            spec = load_fleet(path)
            report = apply(spec)
        except ConfigError as exc:
            _refused(path, exc.problems)
            continue
        except PilothouseError as exc:
            _refused(path, (str(exc),))
            continue
        local = spec.local
        log.info("%s changed: applied (%d action(s))", path, len(report.actions))
        for line in (*report.actions, *report.notes):
            log.info("  %s", line)


def _refused(path: Path, problems: tuple[str, ...]) -> None:
    log.error("%s changed but cannot be applied; keeping the running spec:", path)
    for problem in problems:
        log.error("  %s", problem)
