"""Fleet spec validation: every mistake names its field."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from pilothouse.cli import cli
from pilothouse.config.fleet import (
    EMBEDDED_MODEL_NAME,
    ModelSpec,
    embedded_fleet,
    load_fleet,
    parse_fleet,
)
from pilothouse.config.sources import parse_source
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
        ("models:\n  - name: a\n  - name: a\n", "models[1].name"),
        ("models:\n  - name: a\n    source: gs://b/k\n", "models[0].source"),
        ("models:\n  - name: a\n    source: 'hf://'\n", "models[0].source"),
        ("models:\n  - name: a\n    source: s3://B/k\n", "models[0].source"),
        ("models:\n  - name: a\n    source: file://rel\n", "models[0].source"),
        ("models:\n  - name: a\n    source: hf://org/m\n", "models[0].source"),  # llama.cpp
        (
            "models:\n  - name: a\n    autoscaling: {min_replicas: 1}\n",
            "models[0].autoscaling.max_replicas",
        ),
        (
            "models:\n  - name: a\n    autoscaling: {min_replicas: 3, max_replicas: 2}\n",
            "models[0].autoscaling.max_replicas",
        ),
        (
            "models:\n  - name: a\n    autoscaling: {max_replicas: 2, idle_timeout_s: 5}\n",
            "models[0].autoscaling.idle_timeout_s",
        ),
        (
            "models:\n  - name: a\n    autoscaling: {max_replicas: 2, metric: kv_cache_usage,"
            " target: 80}\n",
            "models[0].autoscaling.target",
        ),
        (
            "models:\n  - name: a\n    autoscaling: {max_replicas: 2, metric: cpu}\n",
            "models[0].autoscaling.metric",
        ),
        (
            "models:\n  - name: a\n    replicas: 5\n    autoscaling: {max_replicas: 2}\n",
            "models[0].replicas",
        ),
        (
            "models:\n  - name: a\n    engine: vllm\n    endpoints: ['h:1']\n"
            "    autoscaling: {max_replicas: 2}\n",
            "models[0].autoscaling",
        ),
        ("models:\n  - name: a\n    resources: {memory: lots}\n", "models[0].resources.memory"),
        ("models:\n  - name: a\n    kubernetes_name: Not_DNS\n", "models[0].kubernetes_name"),
        ("models:\n  - name: a\n    adapters: [{name: l, source: ./l}]\n", "models[0].adapters"),
        (
            "models:\n  - name: a\n    engine: sim\n    adapters: [{name: l, source: embedded}]\n",
            "models[0].adapters[0].source",
        ),
        (
            "models:\n  - name: a\n    engine: sim\n    adapters: [{name: a, source: ./l}]\n",
            "models[0].adapters[0].name",
        ),
        (
            "models:\n  - name: a\n  - name: b\n    engine: sim\n"
            "    adapters: [{name: a, source: ./l}]\n",
            "models[1].adapters[0].name",
        ),
        (
            "models:\n  - name: a\ntraffic:\n  - name: p\n    versions: [{model: x, weight: 1}]\n",
            "traffic[0].versions[0].model",
        ),
        (
            "models:\n  - name: a\ntraffic:\n  - name: a\n    versions: [{model: a, weight: 1}]\n",
            "traffic[0].name",
        ),
        (
            "models:\n  - name: a\ntraffic:\n  - name: p\n    versions: [{model: a, weight: 0}]\n",
            "traffic[0].versions",
        ),
        (
            "models:\n  - name: a\ntraffic:\n  - name: p\n"
            "    versions: [{model: a, weight: 1}, {model: a, weight: 2}]\n",
            "traffic[0].versions[1].model",
        ),
        ("models:\n  - name: a\nkubernetes: {autoscaler: vpa}\n", "kubernetes.autoscaler"),
        ("models:\n  - name: a\nkubernetes: {namespace: Prod}\n", "kubernetes.namespace"),
        (
            "models:\n  - name: a\nlocal: {restart_backoff_s: 5, restart_backoff_max_s: 1}\n",
            "local.restart_backoff_max_s",
        ),
        ("models:\n  - name: a\ngateway: {hold: {timeout_s: 0}}\n", "gateway.hold.timeout_s"),
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


def test_every_problem_is_reported_with_its_path(tmp_path: Path) -> None:
    text = (
        "models:\n"
        "  - {name: a, engine: tgi, source: 'gs://x/y'}\n"
        "  - name: b\n    engine: sim\n"
        "    autoscaling: {min_replicas: 2, max_replicas: 1, idle_timeout_s: 5}\n"
        "    resources: {cpu: lots}\n"
        "gateway: {port: 70000, colour: red}\n"
    )
    with pytest.raises(ConfigError) as caught:
        load_fleet(_write(tmp_path, text))
    paths = [line.split(": ", 1)[0] for line in caught.value.problems]
    assert paths == [
        "models[0].engine",
        "models[0].source",
        "models[1].autoscaling.max_replicas",
        "models[1].autoscaling.idle_timeout_s",
        "models[1].resources.cpu",
        "gateway.port",
        "gateway.colour",
    ]
    assert caught.value.path == "models[0].engine"
    assert "Value error" not in str(caught.value)


def test_validate_command_prints_one_line_per_problem(tmp_path: Path) -> None:
    path = _write(tmp_path, "models:\n  - {name: a, replicas: -1}\ngateway: {port: -1}\n")
    result = CliRunner().invoke(cli, ["validate", "-f", str(path)])
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert [line.split(": ")[1] for line in lines] == ["models[0].replicas", "gateway.port"]
    assert all(line.startswith(f"{path}: ") for line in lines)


def test_validate_command_has_no_pending_notes_for_adapters_and_splits() -> None:
    for example in ("fleet-lora.yaml", "fleet-canary.yaml"):
        result = CliRunner().invoke(cli, ["validate", "-f", str(EXAMPLES / example)])
        assert result.exit_code == 0, result.output
        assert "valid (" in result.stdout
        assert "not" not in result.stderr  # adapters and splits are served now


@pytest.mark.parametrize(
    ("source", "kind", "location"),
    [
        ("embedded", "embedded", ""),
        ("hf://Qwen/Qwen2.5-0.5B-Instruct", "hf", "Qwen/Qwen2.5-0.5B-Instruct"),
        ("s3://my-bucket/models/llama", "s3", "s3://my-bucket/models/llama"),
        ("/models/m.gguf", "path", "/models/m.gguf"),
        ("file:///models/m.gguf", "path", "/models/m.gguf"),
        ("Qwen/Qwen2.5-0.5B-Instruct", "path", "Qwen/Qwen2.5-0.5B-Instruct"),  # a bare hub id
    ],
)
def test_source_forms(source: str, kind: str, location: str) -> None:
    parsed = parse_source(source)
    assert (parsed.kind, parsed.location) == (kind, location)


def test_replica_counts() -> None:
    def model(**fields: object) -> ModelSpec:
        return ModelSpec.model_validate({"name": "m", "engine": "sim", **fields})

    assert (model().initial_replicas, model().bounds) == (2, (2, 2))
    assert model(replicas=3).bounds == (3, 3)
    auto = {"min_replicas": 0, "max_replicas": 4}
    assert (model(autoscaling=auto).initial_replicas, model(autoscaling=auto).bounds) == (0, (0, 4))
    assert model(autoscaling=auto, replicas=2).initial_replicas == 2
    policy = model(autoscaling=auto).autoscaling
    assert policy is not None
    assert (policy.effective_target, policy.scale_to_zero_after_s) == (8.0, 300.0)


def test_a_dumped_fleet_loads_back(tmp_path: Path) -> None:
    spec = load_fleet(EXAMPLES / "fleet-sim-autoscale.yaml")
    again = parse_fleet(spec.model_dump(by_alias=True, mode="json"))
    assert again == spec


def test_the_readme_fleet_example_validates(tmp_path: Path) -> None:
    readme = (EXAMPLES.parent / "README.md").read_text()
    start = readme.index("```yaml", readme.index("## Configuration")) + len("```yaml")
    snippet = readme[start : readme.index("```", start)]
    assert load_fleet(_write(tmp_path, snippet)).models
