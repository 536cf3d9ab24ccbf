"""JWT keys from a JWKS URL: fetched off the request path, refreshed, rotated, outages."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from aiohttp import web

from pilothouse.clock import ManualClock
from pilothouse.config.governance import JwtSpec
from pilothouse.errors import Unauthorized
from pilothouse.governance.jwt import JwtVerifier
from pilothouse.testing.jwt_issuer import AUDIENCE, ISSUER, JwtIssuer

NOW = 1_700_000_000.0


@dataclass
class Provider:
    """A loopback identity provider: serves ``jwks`` (or fails with ``status``)."""

    url: str
    jwks: dict[str, Any]
    status: int = 200
    fetches: int = 0


@pytest.fixture
async def provider() -> AsyncIterator[Provider]:
    state = Provider("", {"keys": []})

    async def serve(_: web.Request) -> web.Response:
        state.fetches += 1
        if state.status != 200:
            return web.Response(status=state.status)
        return web.json_response(state.jwks)

    app = web.Application()
    app.router.add_get("/jwks.json", serve)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    state.url = f"http://127.0.0.1:{runner.addresses[0][1]}/jwks.json"
    try:
        yield state
    finally:
        await runner.cleanup()


def _verifier(url: str, clock: ManualClock) -> JwtVerifier:
    spec = JwtSpec(jwks_url=url, issuer=ISSUER, audiences=[AUDIENCE], jwks_cache_s=300)
    return JwtVerifier(spec, clock)


async def test_jwt_jwks_url_is_fetched_before_use_and_cached(provider: Provider) -> None:
    issuer = JwtIssuer(algorithm="ES256")
    provider.jwks = issuer.jwks()
    clock = ManualClock()
    verifier = _verifier(provider.url, clock)
    token = issuer.mint(now=NOW)
    with pytest.raises(Unauthorized, match="not loaded"):
        verifier.verify(token, NOW)  # nothing fetched yet, and verify never fetches
    assert provider.fetches == 0
    assert verifier.refresh_due()
    assert await verifier.refresh()
    assert verifier.verify(token, NOW).subject == "alice"
    assert not verifier.refresh_due()
    clock.advance(299)
    await verifier.refresh_if_due()
    assert provider.fetches == 1
    clock.advance(1)  # jwks_cache_s
    await verifier.refresh_if_due()
    assert provider.fetches == 2


async def test_jwt_jwks_url_rotation_and_unknown_kid(provider: Provider) -> None:
    old, new = JwtIssuer(algorithm="ES256", kid="k1"), JwtIssuer(algorithm="ES256", kid="k2")
    provider.jwks = old.jwks()
    clock = ManualClock()
    verifier = _verifier(provider.url, clock)
    await verifier.refresh()
    provider.jwks = old.jwks(new)  # the provider rotates in a new key
    with pytest.raises(Unauthorized, match="not in the JWKS"):
        verifier.verify(new.mint(now=NOW), NOW)
    assert not verifier.refresh_due()  # an unknown kid fetches early, but not at once
    clock.advance(10)
    assert verifier.refresh_due()
    await verifier.refresh()
    assert verifier.verify(new.mint(now=NOW), NOW).subject == "alice"
    assert verifier.verify(old.mint(now=NOW), NOW).subject == "alice"


async def test_jwt_jwks_url_outage_keeps_the_last_keys(provider: Provider) -> None:
    issuer = JwtIssuer(algorithm="ES256")
    provider.jwks = issuer.jwks()
    clock = ManualClock()
    verifier = _verifier(provider.url, clock)
    await verifier.refresh()
    provider.status = 503
    clock.advance(300)
    assert not await verifier.refresh()
    assert verifier.verify(issuer.mint(now=NOW), NOW).subject == "alice"
    assert not verifier.refresh_due()
    clock.advance(5)  # a failed fetch is retried soon, not after a whole cache period
    assert verifier.refresh_due()
    provider.jwks = {"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}  # nothing usable
    provider.status = 200
    assert not await verifier.refresh()
    assert verifier.verify(issuer.mint(now=NOW), NOW).subject == "alice"


async def test_jwt_jwks_url_start_fetches_and_stop_ends_the_loop(provider: Provider) -> None:
    issuer = JwtIssuer(algorithm="ES256")
    provider.jwks = issuer.jwks()
    verifier = _verifier(provider.url, ManualClock())
    await verifier.start()
    try:
        assert verifier.verify(issuer.mint(now=NOW), NOW).subject == "alice"
    finally:
        await verifier.stop()
    assert provider.fetches == 1
