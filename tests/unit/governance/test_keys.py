"""API keys: random, stored hashed, scoped."""

from __future__ import annotations

import ipaddress

import pytest

from pilothouse.errors import Forbidden, Unauthorized
from pilothouse.governance.keys import KeyScope, authorize, new_key, verify


def test_keys_are_random_shown_once_and_stored_hashed() -> None:
    plaintext, stored = new_key("team:t")
    other, _ = new_key("team:t")
    assert plaintext.startswith("ph-")
    assert plaintext != other
    assert plaintext not in stored.digest
    assert stored.shown == plaintext[:8]
    assert verify(plaintext, stored)
    assert not verify(other, stored)


SCOPE = KeyScope(
    models=frozenset({"chat"}),
    max_priority=5,
    expires_at=100.0,
    networks=(ipaddress.ip_network("10.0.0.0/8"),),
)


@pytest.mark.parametrize(
    ("model", "client", "now", "error"),
    [
        ("chat", "10.1.2.3", 99.0, None),
        ("chat", "10.1.2.3", 100.0, Unauthorized),  # expired
        ("other", "10.1.2.3", 50.0, Forbidden),  # a model outside the scope
        ("chat", "192.168.1.1", 50.0, Forbidden),  # outside its networks
        ("chat", "not-an-address", 50.0, Forbidden),
    ],
)
def test_scope(model: str, client: str, now: float, error: type[Exception] | None) -> None:
    if error is None:
        assert authorize(SCOPE, model, priority=3, client=client, now=now) == 3
    else:
        with pytest.raises(error):
            authorize(SCOPE, model, priority=3, client=client, now=now)


def test_priority_is_capped_by_the_key() -> None:
    assert authorize(SCOPE, "chat", priority=99, client="10.0.0.1", now=0.0) == 5
    assert authorize(KeyScope(), "any", priority=99, client="x", now=0.0) == 99
