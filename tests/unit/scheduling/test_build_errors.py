"""Config errors only a plugin registry can find: types, parameters and roles."""

from __future__ import annotations

from pathlib import Path

import pytest

from pilothouse.clock import ManualClock
from pilothouse.errors import ConfigError
from pilothouse.scheduling.config import SchedulerConfig, load_scheduler_config, resolve_config
from pilothouse.scheduling.plugins.filters.ready import ReadyFilter
from pilothouse.scheduling.registry import default_registry
from pilothouse.scheduling.scheduler import build_scheduler, validate_config


def _config(
    plugins: list[dict[str, object]], refs: list[dict[str, object]], **extra: object
) -> SchedulerConfig:
    return load_scheduler_config(
        {"plugins": plugins, "profiles": [{"name": "p", "plugins": refs}], **extra}
    )


READY: dict[str, object] = {"type": "ready"}
PICK: dict[str, object] = {"type": "max-score"}
PREFIX: dict[str, object] = {"type": "approx-prefix"}

BAD = [
    pytest.param([{"type": "prefx"}, PICK], [{"ref": "prefx"}, {"ref": "max-score"}], {},
                 "plugins[0].type", "unknown plugin type 'prefx' (known: approx-prefix,",
                 id="unknown-type"),
    pytest.param([READY, PICK, {"type": "approx-prefix", "parameters": {"block_size": 0}}],
                 [{"ref": "max-score"}], {},
                 "plugins[2].parameters.block_size", "must be a positive integer",
                 id="block-size-zero"),
    pytest.param([{"type": "approx-prefix", "parameters": {"block_size": "64"}}, PICK],
                 [{"ref": "max-score"}], {},
                 "plugins[0].parameters.block_size", "must be an integer", id="block-size-str"),
    pytest.param([{"type": "approx-prefix", "parameters": {"block_size": True}}, PICK],
                 [{"ref": "max-score"}], {},
                 "plugins[0].parameters.block_size", "must be an integer", id="block-size-bool"),
    pytest.param([{"type": "approx-prefix", "parameters": {"lru_capacity": 5}}, PICK],
                 [{"ref": "max-score"}], {},
                 "plugins[0].parameters.lru_capacity", "unknown field", id="unknown-parameter"),
    pytest.param([{"type": "ready", "parameters": {"strict": True}}, PICK],
                 [{"ref": "max-score"}], {},
                 "plugins[0].parameters.strict", "unknown field", id="parameter-on-ready"),
    pytest.param([PICK, {"type": "max-score", "name": "m2", "parameters": {"max_targets": -2}}],
                 [{"ref": "max-score"}], {},
                 "plugins[1].parameters.max_targets", "positive", id="max-targets-negative"),
    pytest.param([{"type": "not-saturated", "parameters": {"max_kv_cache_usage": 1.5}}, PICK],
                 [{"ref": "max-score"}], {},
                 "plugins[0].parameters.max_kv_cache_usage", "less than or equal to 1",
                 id="kv-threshold-above-one"),
    pytest.param([READY, PREFIX], [{"ref": "ready"}, {"ref": "approx-prefix"}], {},
                 "profiles[0].plugins", "has no picker", id="zero-pickers"),
    pytest.param([PICK, {"type": "random"}], [{"ref": "max-score"}, {"ref": "random"}], {},
                 "profiles[0].plugins[1].ref", "second picker 'random' (first: 'max-score')",
                 id="two-pickers"),
    pytest.param([READY, PICK], [{"ref": "ready", "weight": 2}, {"ref": "max-score"}], {},
                 "profiles[0].plugins[0].weight", "weight applies only to scorers; 'ready' is a "
                 "filter", id="weight-on-filter"),
    pytest.param([READY, PICK], [{"ref": "ready"}, {"ref": "max-score", "weight": 1.0}], {},
                 "profiles[0].plugins[1].weight", "'max-score' is a picker",
                 id="explicit-weight-on-picker"),
    pytest.param([{"type": "single"}, PICK], [{"ref": "single"}, {"ref": "max-score"}], {},
                 "profiles[0].plugins[0].ref", "not a filter, scorer or picker (profile handler)",
                 id="handler-in-profile"),
    pytest.param([READY, PICK], [{"ref": "max-score"}], {"profile_handler": "ready"},
                 "profile_handler", "not a profile handler (filter)", id="filter-as-handler"),
]  # fmt: skip


@pytest.mark.parametrize(("plugins", "refs", "extra", "path", "message"), BAD)
def test_build_error_names_the_field(
    plugins: list[dict[str, object]],
    refs: list[dict[str, object]],
    extra: dict[str, object],
    path: str,
    message: str,
) -> None:
    config = _config(plugins, refs, **extra)
    with pytest.raises(ConfigError) as info:
        build_scheduler(config, ManualClock())
    assert info.value.path == path
    assert message in info.value.message


def test_unused_declared_plugin_is_allowed() -> None:
    config = _config([READY, PICK, PREFIX], [{"ref": "max-score"}])
    scheduler = build_scheduler(config, ManualClock())
    assert set(scheduler.plugins) == {"ready", "max-score", "approx-prefix"}


def test_named_single_handler_is_used() -> None:
    config = _config([{"type": "single", "name": "h"}, PICK], [{"ref": "max-score"}],
                     profile_handler="h")  # fmt: skip
    scheduler = build_scheduler(config, ManualClock())
    assert scheduler.plugins["h"].name == "h"


def test_resolve_config_validates_plugins(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(
        "plugins:\n  - type: max-score\n    parameters: {max_targets: 0}\n"
        "profiles:\n  - name: p\n    plugins: [{ref: max-score}]\n"
    )
    with pytest.raises(ConfigError) as info:
        resolve_config(str(path))
    assert info.value.path == "plugins[0].parameters.max_targets"


def test_validate_config_uses_the_given_registry() -> None:
    config = _config([{"type": "mine"}, PICK], [{"ref": "max-score"}])
    with pytest.raises(ConfigError, match="unknown plugin type 'mine'"):
        validate_config(config)
    registry = default_registry()
    registry.register("mine", lambda name, params, ctx: ReadyFilter(name))
    validate_config(config, registry=registry)
