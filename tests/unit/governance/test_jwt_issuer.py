"""The test JWT issuer's command: a kept key, its JWKS, and tokens a verifier accepts."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from pilothouse.clock import ManualClock
from pilothouse.config.governance import JwtSpec
from pilothouse.governance.jwt import JwtVerifier
from pilothouse.testing.jwt_issuer import AUDIENCE, ISSUER, main


def test_jwt_issuer_command_mints_tokens_for_its_jwks(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key = tmp_path / "issuer.pem"
    assert main(["--key", str(key), "jwks"]) == 0
    jwks = tmp_path / "jwks.json"
    jwks.write_text(capsys.readouterr().out)
    assert key.stat().st_mode & 0o077 == 0  # the private key is kept private
    args = ["--key", str(key), "mint", "--sub", "bob", "--claim", "team=red"]
    assert main([*args, "--claim", "tier=2"]) == 0  # the same key, loaded again
    token = capsys.readouterr().out.strip()
    spec = JwtSpec(jwks_file=jwks, issuer=ISSUER, audiences=[AUDIENCE])
    claims = JwtVerifier(spec, ManualClock()).verify(token, time.time())
    assert (claims.subject, claims.team, claims.raw["tier"]) == ("bob", "red", 2)
