"""Ports for servers that a test starts and that bind late.

``bind(("127.0.0.1", 0))`` hands out a port from the kernel's ephemeral range and frees it at
once; a server that binds it tens of seconds later (vLLM loads its model first) can find it
taken by any outgoing connection made meanwhile, since those draw from the same range. These
ports are drawn outside that range instead, so only another explicit bind can collide.
"""

from __future__ import annotations

import contextlib
import random
import socket
from pathlib import Path

_RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")
_LOWEST = 20_000
"""Below it: well-known servers and Ray's worker ports (10002-19999 by default)."""


def ephemeral_range() -> tuple[int, int]:
    """The kernel's range for outgoing connections (Linux; the IANA range elsewhere)."""
    with contextlib.suppress(OSError, ValueError):
        low, high = (int(part) for part in _RANGE_FILE.read_text().split())
        return low, high
    return 49_152, 65_535


def late_bind_port() -> int:
    """A port free on every interface now, outside the ephemeral range."""
    low, high = ephemeral_range()
    spans = [(a, b) for a, b in ((_LOWEST, low - 1), (high + 1, 65_535)) if b - a > 100]
    rng = random.SystemRandom()
    for _ in range(200):
        start, end = rng.choice(spans) if spans else (_LOWEST, 65_535)
        port = rng.randint(start, end)
        if _free(port):
            return port
    raise RuntimeError("no free port outside the ephemeral range")


def _free(port: int) -> bool:
    for host in ("0.0.0.0", "127.0.0.1"):
        with socket.socket() as s:
            try:
                s.bind((host, port))
            except OSError:
                return False
    return True
