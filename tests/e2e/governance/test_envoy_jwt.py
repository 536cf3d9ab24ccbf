"""A real Envoy with ``jwt_authn`` in front of the endpoint picker and of a plain upstream.

Envoy (the config :func:`render_envoy_config` renders with :class:`EnvoyJwt`) verifies
bearer JWTs minted by the test issuer against its JWKS file: valid ones reach the picker
with their verified payload in the payload header; expired, forged and missing ones are
refused by Envoy with 401 and never reach the picker or an engine; a payload header the
client sends itself is removed before ``jwt_authn`` runs. What the picker sees is recorded
where it reads it (the ext_proc request headers).
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("grpc", reason="the epp extra (grpcio) is not installed")
pytest.importorskip(
    "envoy.service.ext_proc.v3.external_processor_pb2", reason="xds-protos is not installed"
)

import aiohttp
from aiohttp import web
from prometheus_client import generate_latest

from pilothouse.config.epp import EppPolicy
from pilothouse.config.governance import GovernanceSpec, JwtSpec, LedgerSpec
from pilothouse.epp import protocol
from pilothouse.epp.envoy_config import EnvoyJwt, EnvoySettings, render_envoy_config
from pilothouse.governance.jwt import claims_from_envoy_payload
from pilothouse.governance.records import Quota, Team
from pilothouse.testing.jwt_issuer import AUDIENCE, ISSUER, JwtIssuer
from tests.e2e.governance.stores import sqlite_store
from tests.e2e.test_envoy_epp import (
    MODEL,
    Stack,
    _chat,
    _free_port,
    _start_envoy,
    _stop,
    envoy_binary,
    envoy_stack,
)

pytestmark = pytest.mark.e2e
__all__ = ["envoy_binary"]  # the fixture, shared with the other Envoy tests

HEADER = "x-pilothouse-jwt-payload"
SPEC = JwtSpec(
    envoy_payload_header=HEADER,
    issuer=ISSUER,
    audiences=[AUDIENCE],
    team_claim="org.team",
    priority_claim="tier",
    priorities={"gold": 10},
)
CLAIMS = {"org": {"team": "red"}, "tier": "gold"}


@pytest.fixture(scope="module")
def issuer() -> JwtIssuer:
    return JwtIssuer(algorithm="ES256")


@dataclass
class Seen:
    """Every request's headers as the picker received them from Envoy (all values)."""

    requests: list[list[tuple[str, str]]] = field(default_factory=list)

    def values(self, name: str, index: int = -1) -> list[str]:
        return [v for k, v in self.requests[index] if k == name]


@pytest.fixture
def seen(monkeypatch: pytest.MonkeyPatch) -> Seen:
    """Record what ext_proc sends the picker, where the picker decodes it."""
    record = Seen()
    original = protocol.header_map

    def recording(headers: Any) -> dict[str, str]:
        pairs = [
            (h.key.lower(), h.raw_value.decode("latin-1") if h.raw_value else h.value)
            for h in headers.headers
        ]
        if any(k == ":path" for k, _ in pairs):
            record.requests.append(pairs)
        return original(headers)

    monkeypatch.setattr(protocol, "header_map", recording)
    return record


def _smuggled(**claims: Any) -> str:
    payload = {"sub": "mallory", "iss": ISSUER, "aud": AUDIENCE, "exp": 4e9, **claims}
    return base64.urlsafe_b64encode(json.dumps(payload).encode()).decode().rstrip("=")


def _bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


@contextlib.asynccontextmanager
async def _jwt_stack(
    binary: Path,
    tmp: Path,
    issuer: JwtIssuer,
    *,
    api_keys: bool = False,
    policy: EppPolicy | None = None,
) -> AsyncIterator[Stack]:
    jwks = issuer.write_jwks(tmp / "jwks.json")
    jwt = EnvoyJwt.from_spec(SPEC.model_copy(update={"jwks_file": jwks}), api_keys=api_keys)
    async with envoy_stack(binary, tmp, replicas=1, tls=False, jwt=jwt, policy=policy) as stack:
        yield stack


def _governed(state_dir: Path) -> EppPolicy:
    """The picker's policy: governance over the SQLite store in ``state_dir``, identities
    from the payload Envoy's ``jwt_authn`` verified (SPEC names no JWKS: the picker checks
    issuer and audience again, not the signature)."""
    governance = GovernanceSpec(
        state_dir=state_dir,
        require_key=True,
        sync_interval_s=0.1,
        ledger=LedgerSpec(flush_interval_s=0.05),
        jwt=SPEC,
    )
    return EppPolicy(governance=governance)


async def _post(stack: Stack, headers: dict[str, str], listener: str = "closed") -> tuple[int, str]:
    async with stack.session.post(
        stack.url(listener), json=_chat("hello", max_tokens=2), headers=headers
    ) as reply:
        return reply.status, await reply.text()


# What one request of ``_post`` reserves (docs/governance.md): its prompt's bytes
# ("user\nhello"), 16 template tokens per message line, and its max_tokens.
RESERVED = len(b"user\nhello") + 16 * 2 + 2


def _teams(state_dir: Path) -> dict[str, Team]:
    """Team red (no limits) and team blue, whose budget holds one request's reservation:
    what its first request used leaves less than the next one would reserve."""
    with sqlite_store(state_dir) as store:
        store.create_org("acme")
        return {
            "red": store.create_team("acme", "red"),
            "blue": store.create_team("acme", "blue", Quota(budget_tokens=RESERVED)),
        }


def _usage(body: str) -> tuple[int, int]:
    usage = json.loads(body)["usage"]
    return int(usage["prompt_tokens"]), int(usage["completion_tokens"])


def _error(body: str) -> dict[str, Any]:
    error = json.loads(body)["error"]
    assert isinstance(error, dict)
    return error


async def test_envoy_jwt_valid_is_served_with_its_identity_at_the_picker(
    envoy_binary: Path, tmp_path: Path, issuer: JwtIssuer, seen: Seen
) -> None:
    async with _jwt_stack(envoy_binary, tmp_path, issuer) as stack:
        status, body = await _post(stack, _bearer(issuer.mint(claims=CLAIMS)))
        assert status == 200, body
        assert stack.picks == ["r0"]
        [payload] = seen.values(HEADER)
        claims = claims_from_envoy_payload(payload, SPEC)
        assert (claims.subject, claims.team, claims.priority) == ("alice", "red", 10)
        assert seen.values("authorization") == []  # forward: false, the token stays at Envoy


async def test_envoy_jwt_valid_is_charged_to_its_team_and_an_exhausted_team_gets_429(
    envoy_binary: Path,
    tmp_path: Path,
    issuer: JwtIssuer,
    seen: Seen,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The picker governs: the team Envoy's verified payload names is charged in the
    ledger with the usage its client saw; a team over its budget gets 429 from the picker
    (relayed by Envoy with the OpenAI error body) while another team is still served; a
    token naming a team nobody created gets 401 from the picker."""
    caplog.set_level(logging.DEBUG)
    teams = _teams(tmp_path)
    red = issuer.mint(claims=CLAIMS)
    blue = issuer.mint("bob", {"org": {"team": "blue"}})
    stranger = issuer.mint("eve", {"org": {"team": "green"}})
    served: dict[str, list[tuple[int, int]]] = {"red": [], "blue": []}
    async with _jwt_stack(envoy_binary, tmp_path, issuer, policy=_governed(tmp_path)) as stack:
        for team, token in (("red", red), ("blue", blue)):
            status, body = await _post(stack, _bearer(token))
            assert status == 200, (team, body)
            served[team].append(_usage(body))
        status, body = await _post(stack, _bearer(blue))
        assert status == 429, body
        error = _error(body)
        assert error["code"] == "insufficient_quota", error
        assert error["message"].startswith(f"budget of {teams['blue'].id}@"), error
        assert f"may cost up to {RESERVED} tokens" in error["message"], error
        status, body = await _post(stack, _bearer(red))  # the other team is still served
        assert status == 200, body
        served["red"].append(_usage(body))
        status, body = await _post(stack, _bearer(stranger))
        assert status == 401, body
        assert _error(body)["code"] == "invalid_api_key"
        assert "green" in _error(body)["message"]
        assert stack.picks == ["r0"] * 3, "a refused request is never scheduled"
        sample = stack.epp.metrics.registry.get_sample_value
        assert sample("pilothouse_epp_requests_total", {"result": "refused"}) == 2
        expected_outcomes = {
            ("red", "admitted"): 2,
            ("blue", "admitted"): 1,
            ("blue", "over_budget"): 1,
            ("", "unauthorized"): 1,  # no team is known before the identity is
        }
        for (team, outcome), count in expected_outcomes.items():
            labels = {"team": team, "model": MODEL, "outcome": outcome}
            if outcome == "unauthorized":
                labels["model"] = ""
            assert sample("pilothouse_tenant_requests_total", labels) == count, labels
        red_prompt = sample(
            "pilothouse_tenant_tokens_total", {"team": "red", "model": MODEL, "kind": "prompt"}
        )
        assert red_prompt == sum(p for p, _ in served["red"])
        exposition = generate_latest(stack.epp.metrics.registry).decode()
        payloads = [v for request in seen.requests for k, v in request if k == HEADER]
    # The picker has stopped: its ledger is flushed to the store.
    with sqlite_store(tmp_path) as store:
        rows = {row.group[0]: row for row in store.usage(["team"])}
    charged = {
        team_id: (row.requests, row.prompt_tokens, row.completion_tokens)
        for team_id, row in rows.items()
    }
    expected = {
        teams[name].id: (len(usage), sum(p for p, _ in usage), sum(c for _, c in usage))
        for name, usage in served.items()
    }
    print(f"ledger by team: {charged}")
    assert charged == expected
    assert len(payloads) == 5
    for secret in (red, blue, stranger, *payloads):
        assert secret not in caplog.text
        assert secret not in exposition


def _refused(issuer: JwtIssuer) -> dict[str, dict[str, str]]:
    forger = JwtIssuer(algorithm="ES256", kid=issuer.kid)  # the right kid, another key
    return {
        "expired": _bearer(issuer.mint(claims=CLAIMS, expires_in=-120)),
        "forged": _bearer(forger.mint(claims=CLAIMS)),
        "wrong audience": _bearer(issuer.mint(claims=CLAIMS, audience="someone-else")),
        "missing": {},
        "an API key, not admitted": _bearer("ph-not-a-jwt"),
        "only a smuggled payload": {HEADER: _smuggled(org={"team": "admin"})},
    }


async def test_envoy_jwt_expired_forged_or_missing_never_reach_the_picker(
    envoy_binary: Path, tmp_path: Path, issuer: JwtIssuer, seen: Seen
) -> None:
    async with _jwt_stack(envoy_binary, tmp_path, issuer) as stack:
        before = await stack.served()
        for case, headers in _refused(issuer).items():
            expected = 403 if case == "wrong audience" else 401  # Envoy's choice for aud
            status, body = await _post(stack, headers, "direct")  # Envoy alone
            assert status == expected, (case, body)
            for listener in ("closed", "open"):
                status, body = await _post(stack, headers, listener)
                assert status == expected, (case, listener, body)
        assert seen.requests == [], "a refused request must not reach the picker"
        assert stack.picks == []
        assert await stack.served() == before
        status, _ = await _post(stack, _bearer(issuer.mint(claims=CLAIMS)))
        assert status == 200


async def test_envoy_jwt_refusal_keeps_its_401_on_the_fail_closed_listener(
    envoy_binary: Path, tmp_path: Path, issuer: JwtIssuer
) -> None:
    """jwt_authn's 401 is a local reply that still passes ext_proc's response path: the
    picker passes a response whose request it never saw through untouched."""
    async with _jwt_stack(envoy_binary, tmp_path, issuer) as stack:
        status, body = await _post(stack, _refused(issuer)["expired"])
        assert status == 401, body


async def test_envoy_jwt_smuggled_payload_header_is_not_trusted(
    envoy_binary: Path, tmp_path: Path, issuer: JwtIssuer, seen: Seen
) -> None:
    smuggled = _smuggled(org={"team": "admin"}, tier="gold")
    async with _jwt_stack(envoy_binary, tmp_path, issuer, api_keys=True) as stack:
        headers = {**_bearer(issuer.mint("bob", {"org": {"team": "blue"}})), HEADER: smuggled}
        status, body = await _post(stack, headers)
        assert status == 200, body
        [payload] = seen.values(HEADER)  # one value: Envoy's, the client's was removed
        claims = claims_from_envoy_payload(payload, SPEC)
        assert (claims.subject, claims.team) == ("bob", "blue")
        # An API key passes Envoy unverified (the picker checks it): no token is verified,
        # and the smuggled header is still removed.
        status, body = await _post(stack, {**_bearer("ph-some-api-key"), HEADER: smuggled})
        assert status == 200, body  # this picker has no governance: served
        assert seen.values(HEADER) == []
        assert seen.values("authorization") == ["Bearer ph-some-api-key"]


async def test_envoy_jwt_upstream_gets_neither_token_nor_payload(
    envoy_binary: Path, tmp_path: Path, issuer: JwtIssuer
) -> None:
    """The ``direct`` listener (no picker) in front of a small upstream that echoes the
    headers it got: Envoy alone admits, and strips what the engine does not need."""
    received: list[dict[str, str]] = []

    async def echo(request: web.Request) -> web.Response:
        received.append({k.lower(): v for k, v in request.headers.items()})
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_post("/v1/chat/completions", echo)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    upstream = f"127.0.0.1:{runner.addresses[0][1]}"
    jwt = EnvoyJwt.from_spec(
        SPEC.model_copy(update={"jwks_file": issuer.write_jwks(tmp_path / "k")})
    )
    ports = EnvoySettings(
        listener_port=_free_port(),
        fail_open_port=_free_port(),
        direct_port=_free_port(),
        admin_port=_free_port(),
        epp_port=_free_port(),  # no picker: the direct listener does not use it
        epp_health_port=_free_port(),
        epp_tls=False,
        jwt=jwt,
    )
    proc = await _start_envoy(
        envoy_binary, render_envoy_config(ports, [upstream]), tmp_path, ports.admin_port
    )
    url = f"http://127.0.0.1:{ports.direct_port}/v1/chat/completions"
    try:
        async with aiohttp.ClientSession() as session:

            async def post(headers: dict[str, str]) -> int:
                async with session.post(url, json=_chat("hi"), headers=headers) as reply:
                    return reply.status

            smuggled = {HEADER: _smuggled()}
            assert await post({**_bearer(issuer.mint(claims=CLAIMS)), **smuggled}) == 200
            assert await post(_bearer(issuer.mint(claims=CLAIMS, expires_in=-120))) == 401
            assert await post(_bearer(JwtIssuer(kid=issuer.kid).mint())) == 401
    finally:
        _stop(proc)
        await runner.cleanup()
    [headers] = received  # the refused ones never arrived
    assert "authorization" not in headers
    assert HEADER not in headers
