"""Loading scheduler configs: YAML files, mappings, builtins, and structural errors."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from pilothouse.errors import ConfigError
from pilothouse.scheduling.config import (
    PluginSpec,
    SchedulerConfig,
    builtin_config,
    builtin_config_names,
    load_scheduler_config,
    resolve_config,
)

VALID: dict[str, object] = {
    "plugins": [
        {"type": "ready"},
        {"type": "approx-prefix", "name": "prefix", "parameters": {"block_size": 32}},
        {"type": "max-score", "name": "picker"},
    ],
    "profiles": [
        {
            "name": "default",
            "plugins": [{"ref": "ready"}, {"ref": "prefix", "weight": 2.5}, {"ref": "picker"}],
        }
    ],
}

YAML_TEXT = """\
plugins:
  - type: ready
  - type: least-requests
    name: load
  - type: max-score
profiles:
  - name: default
    plugins:
      - ref: ready
      - ref: load
        weight: 2
      - ref: max-score
"""


def _with(path: tuple[object, ...], value: object) -> dict[str, object]:
    """A deep copy of VALID with the value at ``path`` replaced."""
    doc = copy.deepcopy(VALID)
    node: object = doc
    for key in path[:-1]:
        node = node[key]  # type: ignore[index]
    node[path[-1]] = value  # type: ignore[index]
    return doc


def test_mapping_loads_with_names_weights_and_parameters() -> None:
    config = load_scheduler_config(VALID)
    assert [p.name for p in config.plugins] == ["ready", "prefix", "picker"]
    assert config.plugins[1].parameters == {"block_size": 32}
    assert [r.weight for r in config.profiles[0].plugins] == [1.0, 2.5, 1.0]
    assert config.profile_handler is None


def test_yaml_file_loads(tmp_path: Path) -> None:
    path = tmp_path / "sched.yaml"
    path.write_text(YAML_TEXT)
    config = load_scheduler_config(path)
    assert [p.plugin_name for p in config.plugins] == ["ready", "load", "max-score"]
    assert config.profiles[0].plugins[1].weight == 2.0
    assert load_scheduler_config(str(path)) == config


def test_plugin_name_defaults_to_type() -> None:
    assert PluginSpec(type="ready").name == "ready"
    assert PluginSpec.model_validate({"type": "ready", "name": None}).name == "ready"
    assert PluginSpec(type="ready", name="r2").name == "r2"


def test_config_is_frozen() -> None:
    config = load_scheduler_config(VALID)
    with pytest.raises(ValueError, match="frozen"):
        config.profile_handler = "x"


BAD_CONFIGS = [
    pytest.param(_with(("plugins", 0, "type"), 3), "plugins[0].type", "string", id="type-not-str"),
    pytest.param(_with(("plugins", 0, "type"), ""), "plugins[0].type", "", id="type-empty"),
    pytest.param(_with(("plugins", 1, "colour"), "x"), "plugins[1].colour", "unknown field",
                 id="unknown-plugin-field"),
    pytest.param(_with(("plugins", 2, "name"), "prefix"), "plugins[2].name", "duplicate plugin",
                 id="duplicate-plugin-name"),
    pytest.param(_with(("plugins",), [{"type": "ready"}, {"type": "ready"}]), "plugins[1].name",
                 "duplicate plugin name 'ready'", id="duplicate-defaulted-name"),
    pytest.param(_with(("profiles", 0, "plugins", 1, "ref"), "prefx"),
                 "profiles[0].plugins[1].ref",
                 "unknown plugin 'prefx' (declared: ready, prefix, picker)", id="unknown-ref"),
    pytest.param(_with(("profiles", 0, "plugins", 2, "ref"), "ready"),
                 "profiles[0].plugins[2].ref", "referenced twice", id="ref-twice"),
    pytest.param(_with(("profiles", 0, "plugins", 1, "weight"), -1),
                 "profiles[0].plugins[1].weight", "greater than or equal to 0",
                 id="negative-weight"),
    pytest.param(_with(("profiles", 0, "plugins", 1, "weight"), float("nan")),
                 "profiles[0].plugins[1].weight", "finite", id="nan-weight"),
    pytest.param(_with(("profiles", 0, "plugins", 1, "weight"), "2"),
                 "profiles[0].plugins[1].weight", "must be a number", id="string-weight"),
    pytest.param(_with(("profiles",), []), "profiles", "at least one profile", id="no-profiles"),
    pytest.param(_with(("profiles",), [VALID["profiles"][0], VALID["profiles"][0]]),  # type: ignore[index]
                 "profiles[1].name", "duplicate profile", id="duplicate-profile"),
    pytest.param(_with(("profile_handler",), "nope"), "profile_handler", "unknown plugin 'nope'",
                 id="unknown-handler"),
    pytest.param({"profiles": VALID["profiles"]}, "plugins", "required field is missing",
                 id="missing-plugins"),
    pytest.param(_with(("extra",), 1), "extra", "unknown field", id="unknown-top-field"),
    pytest.param(_with(("plugins", 1, "parameters"), [1]), "plugins[1].parameters",
                 "dictionary", id="parameters-not-mapping"),
]  # fmt: skip


@pytest.mark.parametrize(("document", "path", "message"), BAD_CONFIGS)
def test_bad_config_names_the_field(document: dict[str, object], path: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_scheduler_config(document)
    assert info.value.path == path
    assert message in info.value.message
    assert str(info.value).startswith(f"{path}: ")


BAD_FILES = [
    pytest.param("plugins: [\n  - type: ready\n", "invalid YAML", id="yaml-syntax"),
    pytest.param("- just\n- a list\n", "got list", id="not-a-mapping"),
    pytest.param("", "empty document", id="empty-file"),
    pytest.param("plugins: 3\nprofiles: []\n", "plugins", id="wrong-shape"),
]


@pytest.mark.parametrize(("text", "message"), BAD_FILES)
def test_bad_file_is_config_error(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_scheduler_config(path)


def test_yaml_syntax_error_has_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("plugins:\n  - type: ready\n   name: x\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml at line 3"):
        load_scheduler_config(path)


def test_missing_file_is_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_scheduler_config(tmp_path / "absent.yaml")


def test_builtin_names() -> None:
    assert builtin_config_names() == [
        "blend",
        "cache-aware-sglang",
        "default",
        "least-requests",
        "pd",
        "prefix-load",
        "random",
        "round-robin",
        "slo-aware",
    ]


@pytest.mark.parametrize("name", builtin_config_names())
def test_every_builtin_loads(name: str) -> None:
    config = builtin_config(name)
    assert isinstance(config, SchedulerConfig)
    assert resolve_config(name) == config


def test_unknown_builtin_lists_names() -> None:
    with pytest.raises(ConfigError, match="default, least-requests, pd, prefix-load"):
        builtin_config("fastest")


def test_resolve_config_reads_a_path(tmp_path: Path) -> None:
    path = tmp_path / "mine.yaml"
    path.write_text(YAML_TEXT)
    assert resolve_config(str(path)).plugins[1].name == "load"


def test_resolve_config_unknown_lists_builtins(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        resolve_config(str(tmp_path / "nope.yaml"))
    for name in builtin_config_names():
        assert name in str(info.value)
