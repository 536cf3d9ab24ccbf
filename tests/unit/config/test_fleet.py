"""Fleet spec validation: every mistake names its field."""

from __future__ import annotations

from pathlib import Path

import pytest

from pilothouse.config.fleet import EMBEDDED_MODEL_NAME, embedded_fleet, load_fleet
from pilothouse.errors import ConfigError

EXAMPLES = Path(__file__).parents[3] / "examples"


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "fleet.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("text", "path"),
    [
        ("models: []\n", "models"),
        ("models:\n  - name: a\n    engine: tgi\n", "models[0].engine"),
        ("models:\n  - name: a\n    replicas: -1\n", "models[0].replicas"),
        ("models:\n  - name: a\n    colour: red\n", "models[0].colour"),
        ("models:\n  - name: a\n    endpoints: ['not an address']\n", "models[0].endpoints"),
        ("models:\n  - name: a\ngateway:\n  port: 70000\n", "gateway.port"),
        ("models:\n  - name: a\ngateway:\n  max_body_bytes: 0\n", "gateway.max_body_bytes"),
        ("models:\n  - name: a\ngateway:\n  api_key: ''\n", "gateway.api_key"),
        ("kind: Deployment\nmodels:\n  - name: a\n", "kind"),
        ("apiVersion: v2\nmodels:\n  - name: a\n", "apiVersion"),
        ("models:\n  - name: a\n  - name: a\n", "<root>"),
    ],
)
def test_invalid_fleets_report_the_field(tmp_path: Path, text: str, path: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_fleet(_write(tmp_path, text))
    assert caught.value.path == path


def test_yaml_syntax_error_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_fleet(_write(tmp_path, "models: [\n"))


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_fleet(tmp_path / "absent.yaml")


def test_non_mapping_document_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="mapping"):
        load_fleet(_write(tmp_path, "- a\n- b\n"))


def test_endpoints_accept_urls_and_strip_the_scheme(tmp_path: Path) -> None:
    spec = load_fleet(
        _write(
            tmp_path,
            "models:\n  - name: a\n    engine: vllm\n"
            "    endpoints: ['http://10.0.0.1:8000/', '127.0.0.1:9']\n",
        )
    )
    assert spec.models[0].endpoints == ["10.0.0.1:8000", "127.0.0.1:9"]
    assert not spec.models[0].launched


def test_embedded_default() -> None:
    spec = embedded_fleet(replicas=3, port=9000)
    assert spec.models[0].name == EMBEDDED_MODEL_NAME
    assert spec.models[0].replicas == 3
    assert spec.gateway.host == "127.0.0.1"
    assert spec.gateway.port == 9000


@pytest.mark.parametrize("example", sorted(EXAMPLES.glob("*.yaml")), ids=lambda p: p.name)
def test_examples_validate(example: Path) -> None:
    assert load_fleet(example).models
