from __future__ import annotations

import pytest

from pilothouse.errors import ConfigError
from pilothouse.sim import (
    PRESETS,
    EngineOverrides,
    LatencyModel,
    apply_overrides,
    get_preset,
)
from tests.unit.sim.helpers import FLAT, small_config


@pytest.mark.parametrize("name", ["llama-3.1-8b-h100", "qwen3-32b-tp2-h100", "smollm2-135m-cpu"])
def test_presets_exist_with_sources(name: str) -> None:
    preset = get_preset(name)
    assert preset.name == name
    assert preset.source
    assert preset.max_model_len <= preset.kv_capacity_tokens


def test_qwen_preset_matches_the_llm_d_benchmark_kv_size() -> None:
    assert get_preset("qwen3-32b-tp2-h100").kv_capacity_tokens == 307_328


def test_cpu_preset_serves_one_request_at_a_time() -> None:
    assert get_preset("smollm2-135m-cpu").max_num_seqs == 1


def test_unknown_preset_names_the_known_ones() -> None:
    with pytest.raises(ConfigError, match="qwen3-32b-tp2-h100"):
        get_preset("nope")


def test_presets_mapping_is_read_only() -> None:
    with pytest.raises(TypeError):
        PRESETS["x"] = PRESETS["llama-3.1-8b-h100"]  # type: ignore[index]


def test_overrides_apply_and_clamp_context_to_the_cache() -> None:
    config = apply_overrides(get_preset("llama-3.1-8b-h100"), EngineOverrides(num_gpu_blocks=32))
    assert config.num_gpu_blocks == 32
    assert config.max_model_len == 32 * 16


def test_overrides_keep_unset_fields() -> None:
    base = small_config()
    assert apply_overrides(base, EngineOverrides()) == base
    assert apply_overrides(base, EngineOverrides(max_loras=2)).max_loras == 2


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"max_model_len": 10_000}, "exceeds the KV cache"),
        ({"num_gpu_blocks": 0}, "num_gpu_blocks"),
        ({"max_num_seqs": 100, "max_num_batched_tokens": 64}, "max_num_seqs"),
        ({"max_loras": -1}, "max_loras"),
    ],
)
def test_invalid_configs_are_rejected(changes: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        small_config(**changes)


def test_negative_latency_is_rejected() -> None:
    with pytest.raises(ValueError, match="decode_seq_s"):
        LatencyModel(0.0, 0.0, 0.0, -1.0, 0.0)
    with pytest.raises(ValueError, match="jitter"):
        LatencyModel(0.0, 0.0, 0.0, 0.0, 0.0, jitter=1.5)
    assert FLAT.jitter == 0.0
