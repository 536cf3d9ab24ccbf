"""Declared adapters reach the replicas' command lines."""

from __future__ import annotations

from pilothouse.config.fleet import ModelSpec
from pilothouse.config.traffic import AdapterSpec
from pilothouse.engines.launch import adapter_args, replica_command

ADAPTERS = [
    AdapterSpec(name="sql", source="hf://org/sql-lora"),
    AdapterSpec(name="support", source="/adapters/support"),
]


def test_vllm_gets_enable_lora_and_one_lora_modules_list() -> None:
    model = ModelSpec(name="llama", engine="vllm", source="hf://meta/llama", adapters=ADAPTERS)
    assert adapter_args(model) == [
        "--enable-lora",
        "--lora-modules",
        "sql=org/sql-lora",
        "support=/adapters/support",
    ]
    command = replica_command(model, "127.0.0.1", 9000)
    assert command[command.index("--lora-modules") + 1] == "sql=org/sql-lora"


def test_flags_given_in_args_are_not_repeated() -> None:
    model = ModelSpec(
        name="llama", engine="vllm", args={"enable-lora": True, "max-loras": 4}, adapters=ADAPTERS
    )
    command = replica_command(model, "127.0.0.1", 9000)
    assert command.count("--enable-lora") == 1
    assert command[command.index("--max-loras") + 1] == "4"


def test_sim_repeats_lora_modules_and_allows_runtime_loading() -> None:
    model = ModelSpec(name="chat", engine="sim", adapters=ADAPTERS)
    assert adapter_args(model) == [
        "--allow-runtime-lora-updating",
        "--lora-modules",
        "sql=org/sql-lora",
        "--lora-modules",
        "support=/adapters/support",
    ]
    assert adapter_args(ModelSpec(name="chat", engine="sim")) == []
