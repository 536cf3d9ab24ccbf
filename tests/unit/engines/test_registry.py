"""The registry of engine kinds agrees with the Fleet schema and answers for every kind."""

from __future__ import annotations

from typing import get_args

import pytest

from pilothouse.config.fleet import LORA_ENGINES, EngineName, ModelSpec
from pilothouse.config.traffic import AdapterSpec
from pilothouse.controlplane.render.options import RENDERED_ENGINES
from pilothouse.engines.kind import PodContext
from pilothouse.engines.registry import (
    ENGINE_KINDS,
    builtin_tokenizer_kinds,
    engine_kind,
    is_known,
    lora_support,
    rendered_kinds,
)
from pilothouse.errors import ConfigError


def test_the_registry_knows_exactly_the_kinds_a_fleet_may_name() -> None:
    assert set(ENGINE_KINDS) == set(get_args(EngineName))
    assert all(kind.name == name for name, kind in ENGINE_KINDS.items())


def test_the_kinds_with_lora_are_those_the_schema_accepts_adapters_for() -> None:
    assert {name for name, kind in ENGINE_KINDS.items() if kind.lora} == set(LORA_ENGINES)


def test_an_unknown_kind_is_a_config_error_listing_the_known_ones() -> None:
    with pytest.raises(ConfigError, match=r"unknown engine 'tgi' \(known: llamacpp, openai, "):
        engine_kind("tgi")
    assert not is_known("tgi")
    assert lora_support("tgi") is None


@pytest.mark.parametrize(
    ("name", "launched", "rendered", "metered"),
    [
        ("vllm", True, True, True),
        ("sim", True, True, True),
        ("llamacpp", True, True, False),
        ("sglang", False, False, True),
        ("openai", False, False, False),
    ],
)
def test_what_each_kind_can_do(name: str, launched: bool, rendered: bool, metered: bool) -> None:
    kind = engine_kind(name)
    assert (kind.launcher is not None, kind.pod is not None) == (launched, rendered)
    assert (kind.metric_names is not None) is (kind.metrics_path is not None) is metered
    assert (name in rendered_kinds()) is (name in RENDERED_ENGINES) is rendered


def test_only_the_simulator_tokenizes_as_the_dummy_tokenizer() -> None:
    assert builtin_tokenizer_kinds() == frozenset({"sim"})


def test_a_kind_not_rendered_refuses_pod_args() -> None:
    model = ModelSpec(name="m", engine="openai", endpoints=["h:1"])
    with pytest.raises(ConfigError, match="not rendered"):
        engine_kind("openai").pod_args(_pod(model))


@pytest.mark.parametrize(
    ("name", "args", "gpus"),
    [("vllm", {}, 1), ("vllm", {"tensor_parallel_size": 2, "pipeline-parallel-size": 3}, 6)],
)
def test_gpus_follow_the_parallel_sizes(name: str, args: dict[str, int], gpus: int) -> None:
    model = ModelSpec(name="m", engine=name, source="/m", args=args)
    assert engine_kind(name).gpus(model) == gpus
    assert engine_kind("sim").gpus(ModelSpec(name="m", engine="sim", args=args)) == 0


def test_lora_flags_skip_what_args_already_set() -> None:
    adapters = [AdapterSpec(name="a", source="/a")]
    model = ModelSpec(name="m", engine="sim", args={"lora_modules": "a=/a"}, adapters=adapters)
    assert engine_kind("sim").lora_flags(model) == ["--allow-runtime-lora-updating"]


def _pod(model: ModelSpec) -> PodContext:
    return PodContext(model, "models[0]", {}, 8000, 5557, 5558, "topic", "1")
