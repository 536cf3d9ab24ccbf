"""A test JWT issuer: a key pair, its JWKS, and tokens minted with the claims you choose.

Enterprises hand out identity as JWTs signed by their identity provider; pilothouse checks
them against the provider's JWKS (``governance.jwt`` in the spec). This issuer stands in for
the provider so the whole path can be tested without one: write its JWKS to a file, point
``jwks_file`` (or Envoy's ``local_jwks``) at it, and mint valid, expired, not-yet-valid,
wrongly addressed or forged tokens. Also a small command for trying a setup by hand::

    python -m pilothouse.testing.jwt_issuer --key issuer.pem jwks > jwks.json
    python -m pilothouse.testing.jwt_issuer --key issuer.pem mint --sub alice --claim team=red

(the key is created on first use and kept in ``--key``; never use it for anything real).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

ISSUER = "https://issuer.pilothouse.test"
AUDIENCE = "pilothouse"
_UNSET: Any = object()

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


def _new_key(algorithm: str) -> PrivateKey:
    if algorithm.startswith(("RS", "PS")):
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    curves = {"ES256": ec.SECP256R1(), "ES384": ec.SECP384R1(), "ES512": ec.SECP521R1()}
    if algorithm not in curves:
        raise ValueError(f"the test issuer signs with RS*, PS* or ES*, not {algorithm}")
    return ec.generate_private_key(curves[algorithm])


class JwtIssuer:
    """One signing key (RSA for ``RS*``/``PS*``, EC for ``ES*``) under key id ``kid``.

    Two issuers built with the same ``kid`` but different keys make a forgery: the second
    one's tokens name a key the JWKS has, yet their signatures do not verify.
    """

    def __init__(
        self,
        *,
        issuer: str = ISSUER,
        audience: str | Sequence[str] | None = AUDIENCE,
        algorithm: str = "RS256",
        kid: str = "test-key-1",
        key: PrivateKey | None = None,
    ) -> None:
        self.issuer = issuer
        self.audience = audience
        self.algorithm = algorithm
        self.kid = kid
        self.key = key if key is not None else _new_key(algorithm)

    def public_jwk(self) -> dict[str, Any]:
        """The public half as a JWK, with ``kid``, ``alg`` and ``use``."""
        public = self.key.public_key()
        if isinstance(public, rsa.RSAPublicKey):
            jwk = RSAAlgorithm.to_jwk(public, as_dict=True)
        else:
            jwk = ECAlgorithm.to_jwk(public, as_dict=True)
        return {**jwk, "kid": self.kid, "alg": self.algorithm, "use": "sig"}

    def jwks(self, *others: JwtIssuer) -> dict[str, Any]:
        """``{"keys": [...]}`` with this issuer's key (and any ``others``', for rotation)."""
        return {"keys": [self.public_jwk(), *(o.public_jwk() for o in others)]}

    def write_jwks(self, path: Path, *others: JwtIssuer) -> Path:
        path.write_text(json.dumps(self.jwks(*others), indent=2) + "\n")
        return path

    def mint(
        self,
        subject: str | None = "alice",
        claims: Mapping[str, Any] | None = None,
        *,
        now: float | None = None,
        expires_in: float | None = 300.0,
        not_before: float | None = None,
        issuer: str | None = _UNSET,
        audience: str | Sequence[str] | None = _UNSET,
        kid: str | None = _UNSET,
        headers: Mapping[str, Any] | None = None,
    ) -> str:
        """A signed token. ``now`` (Unix seconds, default the wall clock) sets ``iat``;
        ``expires_in`` and ``not_before`` are relative to it; ``None`` leaves a claim out.
        ``issuer``, ``audience`` and ``kid`` default to the issuer's own."""
        issued = time.time() if now is None else now
        payload: dict[str, Any] = {"iat": int(issued)}
        if subject is not None:
            payload["sub"] = subject
        iss = self.issuer if issuer is _UNSET else issuer
        aud = self.audience if audience is _UNSET else audience
        if iss is not None:
            payload["iss"] = iss
        if aud is not None:
            payload["aud"] = aud if isinstance(aud, str) else list(aud)
        if expires_in is not None:
            payload["exp"] = int(issued + expires_in)
        if not_before is not None:
            payload["nbf"] = int(issued + not_before)
        payload.update(claims or {})
        header = {"kid": self.kid if kid is _UNSET else kid, **(headers or {})}
        if header["kid"] is None:
            del header["kid"]
        return jwt.encode(payload, self.key, algorithm=self.algorithm, headers=header)

    # -- keeping the key between runs (the command) --------------------------------------

    def save(self, path: Path) -> None:
        pem = self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        path.write_bytes(pem)
        path.chmod(0o600)

    @classmethod
    def load(cls, path: Path, **options: Any) -> JwtIssuer:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
            raise ValueError(f"{path}: not an RSA or EC private key")
        algorithm = "RS256" if isinstance(key, rsa.RSAPrivateKey) else "ES256"
        return cls(key=key, **{"algorithm": algorithm, **options})


def _claim(text: str) -> tuple[str, Any]:
    name, sep, value = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"--claim wants name=value, got {text!r}")
    try:
        return name, json.loads(value)
    except json.JSONDecodeError:
        return name, value


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pilothouse.testing.jwt_issuer")
    parser.add_argument("--key", type=Path, required=True, help="private key (created if absent)")
    parser.add_argument("--issuer", default=ISSUER)
    parser.add_argument("--kid", default="test-key-1")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("jwks", help="print the JWKS")
    mint = commands.add_parser("mint", help="print a signed token")
    mint.add_argument("--sub", default="alice")
    mint.add_argument("--aud", default=AUDIENCE)
    mint.add_argument("--ttl", type=float, default=3600.0, help="seconds until it expires")
    mint.add_argument("--claim", type=_claim, action="append", default=[], help="name=value")
    args = parser.parse_args(argv)
    if args.key.exists():
        issuer = JwtIssuer.load(args.key, issuer=args.issuer, kid=args.kid)
    else:
        issuer = JwtIssuer(issuer=args.issuer, kid=args.kid)
        issuer.save(args.key)
    if args.command == "jwks":
        sys.stdout.write(json.dumps(issuer.jwks(), indent=2) + "\n")
    else:
        token = issuer.mint(
            args.sub, dict(args.claim), expires_in=args.ttl, audience=args.aud or None
        )
        sys.stdout.write(token + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
