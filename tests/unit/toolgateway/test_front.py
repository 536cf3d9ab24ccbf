"""The HTTP front's Host parsing and allow-lists (DNS rebinding)."""

from __future__ import annotations

import pytest

from pilothouse.toolgateway.app import _allowed_hosts, _hostname


@pytest.mark.parametrize(
    ("header", "name"),
    [
        ("127.0.0.1:8100", "127.0.0.1"),
        ("LOCALHOST:80", "localhost"),
        ("[::1]:8100", "::1"),
        ("gw.example", "gw.example"),
        ("", None),
        ("[::1", None),
    ],
)
def test_hostname(header: str, name: str | None) -> None:
    assert _hostname(header) == name


def test_loopback_bind_allows_loopback_and_named_hosts_only() -> None:
    hosts = _allowed_hosts("127.0.0.1", ["gw.internal"])
    assert hosts is not None
    assert {"127.0.0.1", "localhost", "::1", "gw.internal"} <= hosts
    assert "attacker.example" not in hosts


def test_wildcard_bind_allows_any_host() -> None:
    assert _allowed_hosts("0.0.0.0", []) is None
