"""Ports for late-binding servers are free and outside the ephemeral range."""

from __future__ import annotations

import socket

from pilothouse.testing.ports import ephemeral_range, late_bind_port


def test_late_bind_ports_are_free_and_outside_the_ephemeral_range() -> None:
    low, high = ephemeral_range()
    for _ in range(20):
        port = late_bind_port()
        assert not low <= port <= high
        with socket.socket() as s:
            s.bind(("127.0.0.1", port))  # free when handed out
