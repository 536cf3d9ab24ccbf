"""JWT bearer identities: tokens checked against a JWKS; claims name the team and priority.

Two front doors, one :class:`Claims`:

- the gateway verifies the token itself (:class:`JwtVerifier`): signature against the JWKS
  key its ``kid`` names, ``exp``/``nbf`` with leeway, issuer, audience, and an algorithm
  allow-list that never admits ``none`` or a symmetric (``HS*``) algorithm — a JWKS holds
  public keys, and accepting ``HS256`` with a public key as the HMAC secret is the classic
  algorithm-confusion forgery;
- behind Envoy, the ``jwt_authn`` filter has verified the token and forwards its payload in
  a header only Envoy can set (the rendered config strips any client copy before
  ``jwt_authn`` runs); the endpoint picker reads it with :func:`claims_from_envoy_payload`.

Keys from a URL are fetched off the request path: :meth:`JwtVerifier.refresh` runs the
blocking fetch (PyJWT's ``PyJWKClient``, urllib) in a worker thread, a background loop
(:meth:`JwtVerifier.start`) calls it when the cached set is ``jwks_cache_s`` old or soon
after a token named an unknown ``kid`` (a key rotation), and :meth:`JwtVerifier.verify`
only ever reads the current, immutable key map. A request never waits for the network:
a token signed with a key not fetched yet is refused, and the next one passes.

Error messages say what is wrong, never what the token held (no token, claim values or
key ids are echoed: they end up in logs).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, TypeGuard

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa

from pilothouse.clock import Clock
from pilothouse.config.governance import JwtSpec
from pilothouse.errors import ConfigError, Unauthorized
from pilothouse.periodic import PeriodicTask

log = logging.getLogger(__name__)

CODE = "invalid_api_key"  # what OpenAI clients know a bad bearer credential by
_JWT = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")
_MAX_TOKEN = 16_384  # longer is no token we mean to parse (and a cheap DoS guard)
_SYMMETRIC = ("HS", "none")
_KEY_TYPES: dict[str, tuple[type, ...]] = {
    "RS": (rsa.RSAPublicKey,),
    "PS": (rsa.RSAPublicKey,),
    "ES": (ec.EllipticCurvePublicKey,),
    "Ed": (ed25519.Ed25519PublicKey, ed448.Ed448PublicKey),
}
_RETRY_S = 5.0  # a failed JWKS fetch is tried again this soon
_UNKNOWN_KID_S = 10.0  # at most one early fetch per this many seconds (bogus kids are free)
_TICK_S = 1.0


@dataclass(frozen=True, slots=True)
class Claims:
    """Who a verified token speaks for. ``team`` and ``priority`` are ``None`` when the
    token does not say (or names a priority class the spec does not map)."""

    subject: str
    team: str | None
    priority: int | None
    expires_at: float | None
    raw: Mapping[str, Any] = field(compare=False, hash=False, repr=False)
    """Every claim, read-only all the way down (nested objects and lists included)."""


def looks_like_jwt(token: str) -> bool:
    """Three dot-separated base64url parts: a JWT, not an API key (``ph-…`` has no dots).

    Cheap and syntactic only; :meth:`JwtVerifier.verify` decides whether it is valid.
    """
    return len(token) <= _MAX_TOKEN and _JWT.fullmatch(token) is not None


def _refuse(message: str) -> Unauthorized:
    return Unauthorized(message, code=CODE)


@dataclass(frozen=True, slots=True)
class _Key:
    key: Any  # a cryptography public key
    alg: str | None  # the JWK's own "alg", when it names one


def _keys_from_jwks(document: object) -> dict[str | None, _Key]:
    """Usable public signing keys by ``kid``; symmetric (``oct``) and encryption keys are
    left out, so an ``HS*`` token has nothing to be checked against."""
    raw = document.get("keys") if isinstance(document, Mapping) else None
    if not isinstance(raw, list):
        raise ValueError('a JWKS is a JSON object with a "keys" list')
    keys: dict[str | None, _Key] = {}
    for entry in raw:
        if not isinstance(entry, dict) or entry.get("kty") == "oct":
            continue
        if entry.get("use", "sig") != "sig":
            continue
        try:
            parsed = jwt.PyJWK(entry)
        except jwt.PyJWTError:
            continue  # a key type or curve this build cannot use: skip it, as PyJWKSet does
        alg = entry.get("alg")
        keys[entry.get("kid")] = _Key(parsed.key, alg if isinstance(alg, str) else None)
    if not keys:
        raise ValueError("the JWKS holds no usable public signing key")
    return keys


def _is_number(value: object) -> TypeGuard[float]:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _freeze(value: Any) -> Any:
    if isinstance(value, dict):
        return MappingProxyType({k: _freeze(v) for k, v in value.items()})
    if isinstance(value, list):
        return tuple(_freeze(v) for v in value)
    return value


def _claim(payload: Mapping[str, Any], path: str) -> Any:
    """The claim at a dotted path (``org.team``), or ``None``. A claim whose own name has a
    dot (``https://example.com/team``) is found too: the whole path is tried first."""
    if path in payload:
        return payload[path]
    value: Any = payload
    for part in path.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


def claims_of(payload: Mapping[str, Any], spec: JwtSpec) -> Claims:
    """Map a verified payload to :class:`Claims` through the spec's team/priority claims."""
    subject = payload.get("sub")
    if not isinstance(subject, str) or not subject:
        raise _refuse("the JWT has no 'sub' claim")
    team = _claim(payload, spec.team_claim)
    if team is not None and not isinstance(team, str):
        raise _refuse(f"the JWT's '{spec.team_claim}' claim is not a string")
    priority = None
    if spec.priority_claim is not None:
        name = _claim(payload, spec.priority_claim)
        priority = spec.priorities.get(name) if isinstance(name, str) else None
    exp = payload.get("exp")
    expires_at = float(exp) if _is_number(exp) else None
    return Claims(subject, team or None, priority, expires_at, _freeze(dict(payload)))


def _check_addressed(payload: Mapping[str, Any], spec: JwtSpec) -> None:
    """Issuer and audience, as the verifier checks them (for payloads Envoy verified)."""
    if spec.issuer is not None and payload.get("iss") != spec.issuer:
        raise _refuse("the JWT's issuer is not accepted")
    aud = payload.get("aud")
    given = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []
    if spec.audiences and not set(given) & set(spec.audiences):
        raise _refuse("the JWT's audience is not accepted")
    if not spec.audiences and aud:
        raise _refuse("the JWT names an audience and none is configured")


def claims_from_envoy_payload(header_value: str, spec: JwtSpec) -> Claims:
    """The claims Envoy's ``jwt_authn`` verified, from its ``forward_payload_header``.

    Envoy writes the token's payload segment as it came: base64url without padding (with
    ``pad_forward_payload_header`` it adds the padding); both are read. The signature and
    times were checked by Envoy; issuer and audience are checked again here (cheap), so a
    loosely configured Envoy cannot widen what the picker accepts. Trusted only because the
    rendered Envoy config removes any client-sent copy of the header before ``jwt_authn``.
    """
    text = header_value.strip()
    try:
        raw = base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True)
        payload = json.loads(raw)
    except (binascii.Error, ValueError) as exc:
        raise _refuse("the forwarded JWT payload is not base64url JSON") from exc
    if not isinstance(payload, dict):
        raise _refuse("the forwarded JWT payload is not a JSON object")
    _check_addressed(payload, spec)
    if not _is_number(payload.get("exp")):
        raise _refuse("the JWT has no numeric 'exp' claim (tokens must expire)")
    return claims_of(payload, spec)


class JwtVerifier:
    """Verifies bearer JWTs against the spec's JWKS (a file, or a URL refreshed in the
    background with :meth:`start` / :meth:`stop`). ``clock`` times the refreshes;
    :meth:`verify`'s ``now`` is Unix time, as ``exp`` and ``nbf`` are."""

    def __init__(self, spec: JwtSpec, clock: Clock) -> None:
        bad = [a for a in spec.algorithms if a.startswith(_SYMMETRIC) or a[:2] not in _KEY_TYPES]
        if bad:
            raise ConfigError(
                f"{', '.join(bad)}: only public-key algorithms (RS*, PS*, ES*, EdDSA) can be "
                "checked against a JWKS",
                path="governance.jwt.algorithms",
            )
        self._spec = spec
        self._clock = clock
        self._keys: Mapping[str | None, _Key] = MappingProxyType({})
        self._loaded_at: float | None = None
        self._last_try: float | None = None
        self._failed = False
        self._unknown_kid = False
        self._client: jwt.PyJWKClient | None = None
        self._loop: _Refresher | None = None
        if spec.jwks_file is not None:
            self._keys = MappingProxyType(self._read_file())
        elif spec.jwks_url is not None:
            # Our key map is the cache (read without locks on the request path); the
            # client only fetches, so its own cache is off.
            self._client = jwt.PyJWKClient(spec.jwks_url, cache_jwk_set=False, timeout=10)
        else:
            raise ConfigError(
                "no jwks_file or jwks_url: behind Envoy, read claims with "
                "claims_from_envoy_payload instead",
                path="governance.jwt",
            )

    def _read_file(self) -> dict[str | None, _Key]:
        path = self._spec.jwks_file
        assert path is not None
        try:
            return _keys_from_jwks(json.loads(path.read_text()))
        except (OSError, ValueError) as exc:
            raise ConfigError(f"{path}: {exc}", path="governance.jwt.jwks_file") from exc

    # -- keys from a URL ---------------------------------------------------------------

    async def refresh(self) -> bool:
        """Fetch the JWKS now (in a worker thread); keep the old keys if that fails."""
        if self._client is None:
            return False
        self._last_try = self._clock.now()
        self._unknown_kid = False
        try:
            document = await asyncio.to_thread(self._client.fetch_data)
            keys = _keys_from_jwks(document)
        except (jwt.PyJWKClientError, OSError, ValueError) as exc:
            self._failed = True
            log.warning("JWKS fetch from %s failed: %s", self._spec.jwks_url, exc)
            return False
        self._keys = MappingProxyType(keys)
        self._loaded_at = self._clock.now()
        self._failed = False
        return True

    def refresh_due(self) -> bool:
        """Whether the background loop should fetch now: nothing loaded yet, the set is
        ``jwks_cache_s`` old, a fetch failed, or a token named a ``kid`` we lack."""
        if self._client is None:
            return False
        now = self._clock.now()
        since_try = None if self._last_try is None else now - self._last_try
        if since_try is None:
            return True
        if self._failed:
            return since_try >= _RETRY_S
        if self._unknown_kid and since_try >= _UNKNOWN_KID_S:
            return True
        assert self._loaded_at is not None
        return now - self._loaded_at >= self._spec.jwks_cache_s

    async def refresh_if_due(self) -> None:
        if self.refresh_due():
            await self.refresh()

    async def start(self) -> None:
        """First fetch (awaited, so the first requests find keys), then the refresh loop."""
        if self._client is None or self._loop is not None:
            return
        await self.refresh()
        self._loop = _Refresher(self)
        self._loop.start()

    async def stop(self) -> None:
        if self._loop is not None:
            await self._loop.stop()
            self._loop = None

    # -- the request path --------------------------------------------------------------

    def verify(self, token: str, now: float) -> Claims:
        """The claims of a valid token; :class:`Unauthorized` for anything else."""
        if not looks_like_jwt(token):
            raise _refuse("the bearer token is not a JWT")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise _refuse("the JWT's header is malformed") from exc
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in self._spec.algorithms:
            allowed = ", ".join(self._spec.algorithms)
            raise _refuse(f"the JWT's signing algorithm is not accepted (allowed: {allowed})")
        key = self._key_for(header.get("kid"), alg)
        payload = self._decode(token, key, alg)
        self._check_times(payload, now)
        return claims_of(payload, self._spec)

    def _key_for(self, kid: object, alg: str) -> _Key:
        keys = self._keys
        if not keys:
            raise _refuse("the identity provider's keys are not loaded (JWKS unavailable)")
        if kid is None:
            if len(keys) != 1:
                raise _refuse("the JWT names no key ('kid') and the JWKS has several")
            key = next(iter(keys.values()))
        elif not isinstance(kid, str) or kid not in keys:
            self._unknown_kid = True  # perhaps a rotation: the background loop fetches soon
            raise _refuse("the JWT's signing key ('kid') is not in the JWKS")
        else:
            key = keys[kid]
        if (key.alg is not None and key.alg != alg) or not isinstance(key.key, _KEY_TYPES[alg[:2]]):
            raise _refuse("the JWT's algorithm does not match its signing key")
        return key

    def _decode(self, token: str, key: _Key, alg: str) -> dict[str, Any]:
        spec = self._spec
        try:
            return jwt.decode(
                token,
                key.key,
                algorithms=[alg],
                audience=spec.audiences or None,
                issuer=spec.issuer,
                # Times are checked against the injected ``now`` (below), not the wall clock.
                options={"verify_exp": False, "verify_nbf": False, "verify_iat": False},
            )
        except jwt.InvalidSignatureError as exc:
            raise _refuse("the JWT's signature does not verify") from exc
        except jwt.InvalidIssuerError as exc:
            raise _refuse("the JWT's issuer is not accepted") from exc
        except jwt.MissingRequiredClaimError as exc:
            raise _refuse(f"the JWT has no '{exc.claim}' claim") from exc
        except jwt.InvalidAudienceError as exc:
            raise _refuse("the JWT's audience is not accepted") from exc
        except jwt.PyJWTError as exc:
            raise _refuse("the JWT is malformed") from exc

    def _check_times(self, payload: Mapping[str, Any], now: float) -> None:
        exp, nbf = payload.get("exp"), payload.get("nbf")
        leeway = self._spec.leeway_s
        if not _is_number(exp):
            raise _refuse("the JWT has no numeric 'exp' claim (tokens must expire)")
        if now >= exp + leeway:
            raise _refuse("the JWT has expired")
        if nbf is not None:
            if not _is_number(nbf):
                raise _refuse("the JWT's 'nbf' claim is not a number")
            if now < nbf - leeway:
                raise _refuse("the JWT is not valid yet ('nbf' is in the future)")


class _Refresher(PeriodicTask):
    """Checks every second whether the JWKS is due for a fetch (cheap when it is not)."""

    def __init__(self, verifier: JwtVerifier) -> None:
        super().__init__(_TICK_S, "jwks-refresh")
        self._verifier = verifier

    async def tick(self) -> None:
        await self._verifier.refresh_if_due()
