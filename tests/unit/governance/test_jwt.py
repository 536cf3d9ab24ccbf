"""JWT bearer identities: verified against a JWKS file, mapped to team and priority."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

import jwt as pyjwt
import pytest
from cryptography.hazmat.primitives import serialization

from pilothouse.clock import ManualClock
from pilothouse.config.governance import JwtSpec
from pilothouse.errors import ConfigError, Unauthorized
from pilothouse.governance.jwt import (
    Claims,
    JwtVerifier,
    claims_from_envoy_payload,
    looks_like_jwt,
)
from pilothouse.testing.jwt_issuer import AUDIENCE, ISSUER, JwtIssuer

NOW = 1_700_000_000.0


@pytest.fixture(scope="module")
def issuer() -> JwtIssuer:
    return JwtIssuer()


@pytest.fixture(scope="module")
def forger() -> JwtIssuer:
    """Same key id, another key: what an attacker without the provider's key can sign."""
    return JwtIssuer(algorithm="ES256")


def _spec(jwks: Path, **overrides: Any) -> JwtSpec:
    values: dict[str, Any] = {
        "jwks_file": jwks,
        "issuer": ISSUER,
        "audiences": [AUDIENCE],
        "team_claim": "org.team",
        "priority_claim": "tier",
        "priorities": {"gold": 10, "bronze": -5},
    }
    return JwtSpec(**(values | overrides))


@pytest.fixture
def jwks(tmp_path: Path, issuer: JwtIssuer) -> Path:
    return issuer.write_jwks(tmp_path / "jwks.json")


@pytest.fixture
def verifier(jwks: Path) -> JwtVerifier:
    return JwtVerifier(_spec(jwks), ManualClock())


def _refused(verifier: JwtVerifier, token: str, match: str, now: float = NOW) -> Unauthorized:
    with pytest.raises(Unauthorized, match=match) as info:
        verifier.verify(token, now)
    message = str(info.value)
    assert info.value.code == "invalid_api_key"
    assert all(part not in message for part in token.split(".") if len(part) > 4), (
        "an error message must never echo the token"
    )
    return info.value


def test_jwt_valid_token_gives_its_claims(verifier: JwtVerifier, issuer: JwtIssuer) -> None:
    token = issuer.mint("alice", {"org": {"team": "red"}, "tier": "gold"}, now=NOW)
    claims = verifier.verify(token, NOW + 10)
    assert claims == Claims("alice", "red", 10, NOW + 300, raw={})
    assert claims.raw["sub"] == "alice"


def test_jwt_expired_is_refused_after_the_leeway(verifier: JwtVerifier, issuer: JwtIssuer) -> None:
    token = issuer.mint(now=NOW, expires_in=60)
    assert verifier.verify(token, NOW + 60 + 29).subject == "alice"  # leeway 30 s
    _refused(verifier, token, "expired", now=NOW + 60 + 30)


def test_jwt_without_exp_is_refused(verifier: JwtVerifier, issuer: JwtIssuer) -> None:
    _refused(verifier, issuer.mint(now=NOW, expires_in=None), "'exp'")


def test_jwt_not_yet_valid_is_refused(verifier: JwtVerifier, issuer: JwtIssuer) -> None:
    token = issuer.mint(now=NOW, not_before=120)
    _refused(verifier, token, "not valid yet")
    assert verifier.verify(token, NOW + 100).subject == "alice"  # within the leeway


@pytest.mark.parametrize(
    ("mint", "match"),
    [
        ({"issuer": "https://elsewhere.test"}, "issuer"),
        ({"issuer": None}, "'iss'"),
        ({"audience": "another-service"}, "audience"),
        ({"audience": ["another", AUDIENCE]}, None),  # one of several audiences is ours
        ({"audience": None}, "'aud'"),
    ],
)
def test_jwt_wrong_iss_or_aud_is_refused(
    verifier: JwtVerifier, issuer: JwtIssuer, mint: dict[str, Any], match: str | None
) -> None:
    token = issuer.mint(now=NOW, **mint)
    if match is None:
        assert verifier.verify(token, NOW).subject == "alice"
    else:
        _refused(verifier, token, match)


def test_jwt_with_an_audience_when_none_is_configured(jwks: Path, issuer: JwtIssuer) -> None:
    verifier = JwtVerifier(_spec(jwks, audiences=[]), ManualClock())
    _refused(verifier, issuer.mint(now=NOW), "audience")
    assert verifier.verify(issuer.mint(now=NOW, audience=None), NOW).subject == "alice"


def test_jwt_forged_signature_is_refused(verifier: JwtVerifier, issuer: JwtIssuer) -> None:
    forger = JwtIssuer(kid=issuer.kid)  # the real kid and alg, another RSA key
    _refused(verifier, forger.mint(now=NOW), "signature")
    token = issuer.mint(now=NOW)
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["sub"] = "root"
    tampered = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    _refused(verifier, f"{header}.{tampered}.{signature}", "signature")


def _b64(data: Mapping[str, Any] | bytes) -> str:
    raw = data if isinstance(data, bytes) else json.dumps(data).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _claims(issuer: JwtIssuer) -> dict[str, Any]:
    return {"sub": "mallory", "iss": ISSUER, "aud": AUDIENCE, "exp": NOW + 300}


def test_jwt_alg_none_is_refused(verifier: JwtVerifier, issuer: JwtIssuer) -> None:
    unsigned = f"{_b64({'alg': 'none', 'kid': issuer.kid})}.{_b64(_claims(issuer))}."
    assert looks_like_jwt(unsigned)
    _refused(verifier, unsigned, "algorithm is not accepted")


def test_jwt_hs256_with_the_public_key_as_secret_is_refused(
    verifier: JwtVerifier, issuer: JwtIssuer
) -> None:
    """Algorithm confusion: HMAC-sign with the (public) RSA key's PEM as the secret."""
    pem = issuer.key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    signing_input = f"{_b64({'alg': 'HS256', 'kid': issuer.kid})}.{_b64(_claims(issuer))}"
    mac = hmac.new(pem, signing_input.encode(), hashlib.sha256).digest()
    _refused(verifier, f"{signing_input}.{_b64(mac)}", "algorithm is not accepted")


@pytest.mark.parametrize("algorithms", [["none"], ["RS256", "HS256"], ["XX1"]])
def test_jwt_symmetric_or_unknown_algorithms_cannot_be_configured(
    jwks: Path, algorithms: list[str]
) -> None:
    with pytest.raises(ConfigError, match="public-key algorithms"):
        JwtVerifier(_spec(jwks, algorithms=algorithms), ManualClock())


def test_jwt_symmetric_keys_in_the_jwks_are_ignored(tmp_path: Path, issuer: JwtIssuer) -> None:
    secret = {"kty": "oct", "kid": "shared", "k": _b64(b"s" * 32), "alg": "HS256"}
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps({"keys": [secret, issuer.public_jwk()]}))
    verifier = JwtVerifier(_spec(path, algorithms=["RS256", "ES256"]), ManualClock())
    token = pyjwt.encode(_claims(issuer), b"s" * 32, algorithm="HS256", headers={"kid": "shared"})
    _refused(verifier, token, "algorithm")
    only_secret = tmp_path / "secret.json"
    only_secret.write_text(json.dumps({"keys": [secret]}))
    with pytest.raises(ConfigError, match="no usable public signing key"):
        JwtVerifier(_spec(only_secret), ManualClock())


def test_jwt_unknown_kid_is_refused(verifier: JwtVerifier, issuer: JwtIssuer) -> None:
    _refused(verifier, issuer.mint(now=NOW, kid="rotated-key"), "not in the JWKS")


def test_jwt_kid_is_needed_only_when_the_jwks_has_several_keys(
    tmp_path: Path, issuer: JwtIssuer, forger: JwtIssuer
) -> None:
    one = JwtVerifier(_spec(issuer.write_jwks(tmp_path / "one.json")), ManualClock())
    assert one.verify(issuer.mint(now=NOW, kid=None), NOW).subject == "alice"
    other = JwtIssuer(algorithm="ES256", kid="ec-key")
    two = JwtVerifier(_spec(issuer.write_jwks(tmp_path / "two.json", other)), ManualClock())
    _refused(two, issuer.mint(now=NOW, kid=None), "names no key")
    assert two.verify(other.mint(now=NOW), NOW).subject == "alice"  # rotation: both keys


def test_jwt_algorithm_must_match_the_key(
    verifier: JwtVerifier, issuer: JwtIssuer, forger: JwtIssuer
) -> None:
    """An ES256 token naming the RSA key's kid is refused before any signature check."""
    _refused(verifier, forger.mint(now=NOW, kid=issuer.kid), "does not match its signing key")


@pytest.mark.parametrize(
    ("team_claim", "claims", "team"),
    [
        ("org.team", {"org": {"team": "red"}}, "red"),
        ("org.team", {"org": {"unit": "red"}}, None),
        ("org.team", {"org": "red"}, None),
        ("team", {"team": "blue"}, "blue"),
        ("https://example.com/team", {"https://example.com/team": "green"}, "green"),
        ("a.b.c", {"a": {"b": {"c": "deep"}}}, "deep"),
    ],
)
def test_jwt_nested_team_claim(
    jwks: Path, issuer: JwtIssuer, team_claim: str, claims: dict[str, Any], team: str | None
) -> None:
    verifier = JwtVerifier(_spec(jwks, team_claim=team_claim), ManualClock())
    assert verifier.verify(issuer.mint(claims=claims, now=NOW), NOW).team == team


def test_jwt_team_claim_that_is_not_a_string_is_refused(
    verifier: JwtVerifier, issuer: JwtIssuer
) -> None:
    _refused(verifier, issuer.mint(claims={"org": {"team": ["red"]}}, now=NOW), "not a string")


def test_jwt_without_sub_is_refused(verifier: JwtVerifier, issuer: JwtIssuer) -> None:
    _refused(verifier, issuer.mint(None, now=NOW), "'sub'")


@pytest.mark.parametrize(
    ("claims", "priority"),
    [({"tier": "gold"}, 10), ({"tier": "bronze"}, -5), ({"tier": "platinum"}, None), ({}, None)],
)
def test_jwt_priority_mapping(
    verifier: JwtVerifier, issuer: JwtIssuer, claims: dict[str, Any], priority: int | None
) -> None:
    assert verifier.verify(issuer.mint(claims=claims, now=NOW), NOW).priority == priority


def test_jwt_raw_claims_are_read_only(verifier: JwtVerifier, issuer: JwtIssuer) -> None:
    claims = verifier.verify(issuer.mint(claims={"org": {"team": "red"}, "groups": ["a"]}), NOW)
    assert isinstance(claims.raw, MappingProxyType)
    assert claims.raw["groups"] == ("a",)
    with pytest.raises(TypeError):
        claims.raw["org"]["team"] = "blue"  # type: ignore[index]


@pytest.mark.parametrize(
    ("token", "expected"),
    [
        ("eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhIn0.c2ln", True),
        ("eyJhbGciOiJub25lIn0.eyJzdWIiOiJhIn0.", True),
        ("ph-abcdefghijklmnopqrstuvwxyz_0123456789-ABCD", False),
        ("a.b", False),
        ("a.b.c.d", False),
        ("a b.c.d", False),
        ("a.b.c=", False),
    ],
)
def test_jwt_looks_like_jwt(token: str, expected: bool) -> None:
    assert looks_like_jwt(token) is expected


def test_jwt_malformed_tokens_are_refused(verifier: JwtVerifier) -> None:
    _refused(verifier, "ph-not-a-jwt", "not a JWT")
    _refused(verifier, "e30.e30.e30", "algorithm")  # {} as a header: no alg
    _refused(verifier, "bm90IGpzb24.e30.e30", "header is malformed")


def test_jwt_jwks_file_problems_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="jwks_file"):
        JwtVerifier(_spec(tmp_path / "missing.json"), ManualClock())
    bad = tmp_path / "bad.json"
    bad.write_text('{"not": "a jwks"}')
    with pytest.raises(ConfigError, match='"keys" list'):
        JwtVerifier(_spec(bad), ManualClock())
    with pytest.raises(ConfigError, match="claims_from_envoy_payload"):
        JwtVerifier(JwtSpec(envoy_payload_header="x-jwt-payload"), ManualClock())


# -- behind Envoy: the payload jwt_authn forwarded ---------------------------------------


def _envoy_header(payload: dict[str, Any], padded: bool = False) -> str:
    encoded = base64.urlsafe_b64encode(json.dumps(payload).encode()).decode()
    return encoded if padded else encoded.rstrip("=")


ENVOY_SPEC = JwtSpec(
    envoy_payload_header="x-pilothouse-jwt-payload",
    issuer=ISSUER,
    audiences=[AUDIENCE],
    team_claim="org.team",
    priority_claim="tier",
    priorities={"gold": 10},
)
PAYLOAD = {
    "sub": "alice",
    "iss": ISSUER,
    "aud": AUDIENCE,
    "exp": NOW + 300,
    "org": {"team": "red"},
    "tier": "gold",
}


@pytest.mark.parametrize("padded", [False, True], ids=["unpadded", "padded"])
def test_jwt_envoy_payload_decode(padded: bool) -> None:
    claims = claims_from_envoy_payload(_envoy_header(PAYLOAD, padded), ENVOY_SPEC)
    assert (claims.subject, claims.team, claims.priority) == ("alice", "red", 10)
    assert claims.expires_at == NOW + 300


def test_jwt_envoy_payload_is_the_token_segment(issuer: JwtIssuer) -> None:
    """What Envoy forwards is the token's own payload segment (base64url, no padding)."""
    token = issuer.mint(claims={"org": {"team": "red"}}, now=NOW)
    assert claims_from_envoy_payload(token.split(".")[1], ENVOY_SPEC).team == "red"


@pytest.mark.parametrize(
    ("header", "match"),
    [
        ("not base64 at all!", "base64url JSON"),
        (_envoy_header({}) + "%", "base64url JSON"),
        (base64.urlsafe_b64encode(b"[1, 2]").decode(), "not a JSON object"),
        (_envoy_header(PAYLOAD | {"iss": "https://elsewhere.test"}), "issuer"),
        (_envoy_header(PAYLOAD | {"aud": ["other"]}), "audience"),
        (_envoy_header({k: v for k, v in PAYLOAD.items() if k != "exp"}), "'exp'"),
        (_envoy_header({k: v for k, v in PAYLOAD.items() if k != "sub"}), "'sub'"),
    ],
)
def test_jwt_envoy_payload_refused(header: str, match: str) -> None:
    with pytest.raises(Unauthorized, match=match):
        claims_from_envoy_payload(header, ENVOY_SPEC)
