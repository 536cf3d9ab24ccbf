"""API keys: random, shown once, stored hashed, with scopes.

A key is ``ph-`` followed by 32 random URL-safe bytes (``secrets``). Only its SHA-256 is
kept (a key has 256 bits of entropy, so a fast hash is the right one: there is nothing to
brute-force, and checking a key costs a microsecond on the request path) together with a
short prefix that lets people tell keys apart in listings. A key's :class:`KeyScope` says
which models it may use, up to which priority, until when, and from which networks.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
from dataclasses import dataclass, field

from pilothouse.errors import Forbidden, Unauthorized

PREFIX = "ph-"
_SHOWN = 8  # characters of a key kept in clear for listings


@dataclass(frozen=True, slots=True)
class KeyScope:
    """What a key may do; empty or ``None`` fields allow everything."""

    models: frozenset[str] = frozenset()
    max_priority: int | None = None
    expires_at: float | None = None
    networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = field(default=())


@dataclass(frozen=True, slots=True)
class StoredKey:
    """What is kept of a key: its hash, a prefix for people, its owner and scope."""

    digest: str
    shown: str
    owner: str
    scope: KeyScope = field(default_factory=KeyScope)


def new_key(owner: str, scope: KeyScope | None = None) -> tuple[str, StoredKey]:
    """A fresh key (the plaintext, to show once) and what to store of it."""
    plaintext = PREFIX + secrets.token_urlsafe(32)
    return plaintext, StoredKey(digest(plaintext), plaintext[:_SHOWN], owner, scope or KeyScope())


def digest(plaintext: str) -> str:
    return hashlib.sha256(plaintext.encode()).hexdigest()


def verify(plaintext: str, stored: StoredKey) -> bool:
    """Constant-time comparison of a presented key with a stored one."""
    return hmac.compare_digest(digest(plaintext), stored.digest)


def authorize(scope: KeyScope, model: str, priority: int, client: str, now: float) -> int:
    """Check one request against a key's scope; the priority it may have (capped).

    Raises :class:`Unauthorized` (401) for an expired key and :class:`Forbidden` (403) for a
    model or a network the key may not use.
    """
    if scope.expires_at is not None and now >= scope.expires_at:
        raise Unauthorized("the API key has expired", code="invalid_api_key")
    if scope.models and model not in scope.models:
        raise Forbidden(f"the API key may not use model '{model}'", param="model")
    if scope.networks and not _within(client, scope.networks):
        raise Forbidden("the API key may not be used from this network")
    if scope.max_priority is not None:
        return min(priority, scope.max_priority)
    return priority


def _within(
    client: str, networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]
) -> bool:
    try:
        address = ipaddress.ip_address(client)
    except ValueError:
        return False
    return any(address in network for network in networks)
