from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from pilothouse.config.fleet import FleetSpec, load_fleet

EXAMPLES = Path(__file__).resolve().parents[4] / "examples"
VLLM_EXAMPLE = EXAMPLES / "fleet-vllm-gpu.yaml"
SIM_EXAMPLE = EXAMPLES / "fleet-k8s-sim.yaml"
EMBEDDED_EXAMPLE = EXAMPLES / "fleet-embedded.yaml"


@pytest.fixture
def vllm_fleet() -> FleetSpec:
    return load_fleet(VLLM_EXAMPLE)


@pytest.fixture
def sim_fleet() -> FleetSpec:
    return load_fleet(SIM_EXAMPLE)


@pytest.fixture
def embedded_fleet() -> FleetSpec:
    return load_fleet(EMBEDDED_EXAMPLE)


@pytest.fixture
def two_model_fleet() -> FleetSpec:
    """The sim example plus a second model: routes then match on the model header."""
    data = yaml.safe_load(SIM_EXAMPLE.read_text())
    data["models"].append(
        {
            "name": "qwen3-32b",
            "engine": "sim",
            "replicas": 2,
            "args": {"preset": "qwen3-32b-tp2-h100"},
        }
    )
    return FleetSpec.model_validate(data)
